// Uploads 16 MiB to URL with Go's net/http and prints what it saw: the
// status code, or "error: <message>". Used by tests/client_matrix.rs.
//
//	go run upload.go URL
package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

func main() {
	body := bytes.Repeat([]byte("u"), 16<<20)
	client := &http.Client{Timeout: 30 * time.Second}
	res, err := client.Post(os.Args[1], "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		fmt.Printf("error: %.200s\n", err.Error())
		return
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	fmt.Println(res.StatusCode)
}
