// Command rawsend is the baseline writer: it sends a file of pre-formatted,
// newline-ended syslog messages to a TCP receiver over one connection, as
// fast as the connection takes them, then half-closes and waits for the
// receiver to close, so that, like siem-recovery's TCP sink, it finishes
// only once the receiver has read everything.
package main

import (
	"bufio"
	"flag"
	"io"
	"log"
	"net"
	"os"
)

func main() {
	addr := flag.String("addr", "", "receiver host:port")
	in := flag.String("i", "", "file of formatted messages")
	flag.Parse()
	f, err := os.Open(*in)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	c, err := net.Dial("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := io.Copy(c, bufio.NewReaderSize(f, 1<<20)); err != nil {
		log.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		log.Fatal(err)
	}
	io.Copy(io.Discard, c)
	c.Close()
}
