// Command gen writes N MCAS activities as JSON lines, in the shape the
// activities API returns them (internal/activitygen), all inside the window
// [-start, -start+1h) in ascending timestamp order.
package main

import (
	"bufio"
	"flag"
	"log"
	"os"

	"siem-recovery/internal/activitygen"
)

func main() {
	n := flag.Int("n", 1_000_000, "activities to write")
	start := flag.Int64("start", 1715673600000, "window start, epoch ms")
	out := flag.String("o", "-", "output file (- for stdout)")
	flag.Parse()
	w := os.Stdout
	if *out != "-" {
		f, err := os.Create(*out)
		if err != nil {
			log.Fatal(err)
		}
		defer f.Close()
		w = f
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	line := make([]byte, 0, 4096)
	for i := range *n {
		a := activitygen.New(i, *start+int64(i)*3_599_000/int64(*n))
		line = append(a.Append(line[:0]), '\n')
		if _, err := bw.Write(line); err != nil {
			log.Fatal(err)
		}
	}
	if err := bw.Flush(); err != nil {
		log.Fatal(err)
	}
}
