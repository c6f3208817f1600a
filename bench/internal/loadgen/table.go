package loadgen

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"
)

// Row is one line of a result table: what one target did in one mode.
// Zero fields print as "-".
type Row struct {
	Target  string // "wsauth", "gws", a URL, or "ratio" for a Ratio row
	Mode    string
	Conns   int
	Payload int // frame bytes; 0 for handshake and idle
	Msgs    int64
	Elapsed time.Duration
	P50     time.Duration
	P99     time.Duration
	// HeapPerConn and RSSPerConn are bytes per idle connection (idle mode).
	HeapPerConn float64
	RSSPerConn  float64
	Errors      int64

	ratio *ratio // set by Ratio
}

type ratio struct{ rate, p50, p99, heap, rss float64 }

// Rate returns messages (or handshakes) per second.
func (r Row) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Msgs) / r.Elapsed.Seconds()
}

// Ratio returns a row comparing r to base: throughput, latency and memory
// of r divided by base's.
func Ratio(r, base Row) Row {
	div := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return a / b
	}
	return Row{
		Target: "ratio", Mode: r.Mode, Conns: r.Conns, Payload: r.Payload,
		ratio: &ratio{
			rate: div(r.Rate(), base.Rate()),
			p50:  div(float64(r.P50), float64(base.P50)),
			p99:  div(float64(r.P99), float64(base.P99)),
			heap: div(r.HeapPerConn, base.HeapPerConn),
			rss:  div(r.RSSPerConn, base.RSSPerConn),
		},
	}
}

// WriteTable prints rows as an aligned table.
func WriteTable(w io.Writer, rows []Row) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\tmode\tconns\tpayload\tmsgs\tmsgs/s\tp50\tp99\theap B/conn\tRSS B/conn\terrors\t")
	for _, r := range rows {
		if r.ratio != nil {
			x := r.ratio
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
				r.Target, r.Mode, count(int64(r.Conns)), count(int64(r.Payload)), "-",
				times(x.rate), times(x.p50), times(x.p99), times(x.heap), times(x.rss), "-")
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
			r.Target, r.Mode, count(int64(r.Conns)), count(int64(r.Payload)), count(r.Msgs),
			rate(r.Rate()), dur(r.P50), dur(r.P99), bytesPer(r.HeapPerConn), bytesPer(r.RSSPerConn),
			strconv.FormatInt(r.Errors, 10))
	}
	return tw.Flush()
}

func count(n int64) string {
	if n == 0 {
		return "-"
	}
	return strconv.FormatInt(n, 10)
}

// rate prints a per-second rate with three significant digits.
func rate(v float64) string {
	switch {
	case v <= 0:
		return "-"
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', 2, 64) + "M"
	case v >= 1e3:
		return strconv.FormatFloat(v/1e3, 'f', 1, 64) + "k"
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

// dur prints a latency rounded to three significant digits.
func dur(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d >= time.Second:
		return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) + "s"
	case d >= time.Millisecond:
		return strconv.FormatFloat(float64(d)/1e6, 'f', 2, 64) + "ms"
	}
	return strconv.FormatFloat(float64(d)/1e3, 'f', 1, 64) + "µs"
}

func bytesPer(v float64) string {
	if v == 0 {
		return "-"
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

func times(v float64) string {
	if v == 0 {
		return "-"
	}
	return strconv.FormatFloat(v, 'f', 2, 64) + "x"
}
