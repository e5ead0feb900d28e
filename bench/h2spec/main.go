// The h2spec command line, for the copy in /work/shared/conformance/h2spec/src,
// which lacks upstream's cmd/h2spec/ (see build.sh). Written for mhd2's use:
// the options h2spec documents (-h -p -t -k -o -P -j -S -v, and sections as
// arguments), against h2spec's own config.Config and h2spec.Run.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/summerwind/h2spec"
	"github.com/summerwind/h2spec/config"
)

func main() {
	c := &config.Config{}
	flag.StringVar(&c.Host, "h", "127.0.0.1", "target host")
	flag.IntVar(&c.Port, "p", 0, "target port (default 80, or 443 with -t)")
	flag.StringVar(&c.Path, "P", "/", "target path")
	flag.BoolVar(&c.TLS, "t", false, "connect over TLS (ALPN h2)")
	flag.BoolVar(&c.Insecure, "k", false, "do not verify the server's certificate")
	timeout := flag.Int("o", 2, "seconds allowed per test case")
	flag.IntVar(&c.MaxHeaderLen, "max-header-length", 4000, "largest header block sent")
	flag.StringVar(&c.JUnitReport, "j", "", "write a JUnit report to this file")
	flag.BoolVar(&c.Strict, "S", false, "also run the cases marked strict")
	flag.BoolVar(&c.Verbose, "v", false, "verbose output")
	flag.Parse()
	c.Timeout = time.Duration(*timeout) * time.Second
	c.Sections = flag.Args()
	if c.Port == 0 {
		c.Port = 80
		if c.TLS {
			c.Port = 443
		}
	}
	ok, err := h2spec.Run(c)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if !ok {
		os.Exit(1)
	}
}
