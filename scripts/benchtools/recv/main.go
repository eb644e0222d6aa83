// Command recv is a syslog receiver that discards: it accepts TCP
// connections on 127.0.0.1, counts the newline-ended messages, and closes
// each connection once it has read it to its end, as rsyslog does (the
// confirmation siem-recovery's TCP sink waits for). It prints its address
// on stdout, then, on SIGTERM, the messages and bytes it received.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "address to listen on")
	flag.Parse()
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(l.Addr().String())
	var lines, total atomic.Int64
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				buf := make([]byte, 256<<10)
				for {
					n, err := c.Read(buf)
					lines.Add(int64(bytes.Count(buf[:n], []byte{'\n'})))
					total.Add(int64(n))
					if err == io.EOF || err != nil {
						return
					}
				}
			}(c)
		}
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
	fmt.Printf("%d %d\n", lines.Load(), total.Load())
}
