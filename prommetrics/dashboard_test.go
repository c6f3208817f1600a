package prommetrics_test

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/prommetrics"
	"github.com/wsauth/wsauth/session"
)

// dashboardPath is the Grafana dashboard of docs/operations.md.
const dashboardPath = "../docs/grafana-dashboard.json"

// recordingRegisterer remembers the collectors registered through it.
type recordingRegisterer struct {
	prometheus.Registerer
	collectors []prometheus.Collector
}

func (r *recordingRegisterer) Register(c prometheus.Collector) error {
	r.collectors = append(r.collectors, c)
	return r.Registerer.Register(c)
}

// exported returns the metric families an Observer exports, each with a
// series: one event of every kind makes the labelled ones appear. It
// fails if a metric still has no series, so that a new metric cannot slip
// past the tests that use it.
func exported(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewRegistry()
	rec := &recordingRegisterer{Registerer: reg}
	obs, err := prommetrics.New(rec, prommetrics.Options{})
	require.NoError(t, err)
	for k := wsauth.EventKind(1); !strings.HasPrefix(k.String(), "EventKind("); k++ {
		obs.Observe(wsauth.Event{Kind: k, Stage: "auth", N: 1, From: session.Closed, To: session.Pending})
	}
	mfs, err := reg.Gather()
	require.NoError(t, err)
	families := make(map[string]*dto.MetricFamily, len(mfs))
	for _, mf := range mfs {
		families[mf.GetName()] = mf
	}
	descs := make(chan *prometheus.Desc, 64)
	n := 0
	for _, c := range rec.collectors {
		c.Describe(descs)
		for len(descs) > 0 {
			<-descs
			n++
		}
	}
	require.Len(t, families, n, "a metric without a series: make an event of exported's produce it")
	return families
}

// labelsOf returns the label names a reference to name may use: the
// family's own, the target labels Prometheus adds, and le for a
// histogram's buckets.
func labelsOf(mf *dto.MetricFamily, name string) []string {
	labels := []string{"job", "instance"}
	for _, l := range mf.GetMetric()[0].GetLabel() {
		labels = append(labels, l.GetName())
	}
	if strings.HasSuffix(name, "_bucket") {
		labels = append(labels, "le")
	}
	return labels
}

// family returns the family a metric name of PromQL refers to: a family
// by its name, or a histogram by the name of its buckets, sum or count.
func family(families map[string]*dto.MetricFamily, name string) *dto.MetricFamily {
	if mf, ok := families[name]; ok {
		return mf
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if mf, ok := families[base]; ok && mf.GetType() == dto.MetricType_HISTOGRAM {
				return mf
			}
		}
	}
	return nil
}

var (
	metricRef   = regexp.MustCompile(`\bwsauth_[A-Za-z0-9_]*`)
	matchers    = regexp.MustCompile(`\b(wsauth_[A-Za-z0-9_]*)\{([^}]*)\}`)
	matcherName = regexp.MustCompile(`([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)`)
	grouping    = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
	legendLabel = regexp.MustCompile(`\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}`)
)

type dashboard struct {
	UID    string  `json:"uid"`
	Panels []panel `json:"panels"`
}

type panel struct {
	ID      int      `json:"id"`
	Type    string   `json:"type"`
	Title   string   `json:"title"`
	Targets []target `json:"targets"`
}

type target struct {
	RefID        string `json:"refId"`
	Expr         string `json:"expr"`
	LegendFormat string `json:"legendFormat"`
	Datasource   struct {
		UID string `json:"uid"`
	} `json:"datasource"`
}

// TestGrafanaDashboard: docs/grafana-dashboard.json is built on the
// metrics this package exports. Every wsauth_ name in it (queries,
// variables, descriptions) is one of them (a histogram's _bucket, _sum
// and _count included), with label names it has, in its matchers, its
// aggregations and its legends; and every metric has a panel.
func TestGrafanaDashboard(t *testing.T) {
	t.Parallel()
	families := exported(t)
	raw, err := os.ReadFile(dashboardPath)
	require.NoError(t, err)

	// Every name anywhere in the file.
	referenced := map[string]bool{}
	for _, name := range metricRef.FindAllString(string(raw), -1) {
		if mf := family(families, name); assert.NotNil(t, mf, "%s: %s is not a metric prommetrics exports", dashboardPath, name) {
			referenced[mf.GetName()] = true
		}
	}
	var missing []string
	for name := range families {
		if !referenced[name] {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	assert.Empty(t, missing, "metrics the dashboard does not show")

	// The queries: their label names, and the panels' shape.
	var d dashboard
	require.NoError(t, json.Unmarshal(raw, &d))
	require.NotEmpty(t, d.UID)
	ids := map[int]bool{}
	queries := 0
	for _, p := range d.Panels {
		assert.False(t, ids[p.ID], "panel id %d twice", p.ID)
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		require.NotEmpty(t, p.Targets, "panel %q has no query", p.Title)
		for _, tg := range p.Targets {
			queries++
			what := p.Title + " " + tg.RefID
			assert.NotEmpty(t, tg.RefID, what)
			assert.Equal(t, "${datasource}", tg.Datasource.UID, "%s: the data source variable", what)
			var allowed []string
			for _, name := range metricRef.FindAllString(tg.Expr, -1) {
				if mf := family(families, name); mf != nil {
					allowed = append(allowed, labelsOf(mf, name)...)
				}
			}
			require.NotEmpty(t, allowed, "%s: no wsauth metric in %q", what, tg.Expr)
			for _, m := range matchers.FindAllStringSubmatch(tg.Expr, -1) {
				mf := family(families, m[1])
				if mf == nil {
					continue // reported above
				}
				for _, l := range matcherName.FindAllStringSubmatch(m[2], -1) {
					assert.Contains(t, labelsOf(mf, m[1]), l[1], "%s: %s has no label %s", what, m[1], l[1])
				}
			}
			var grouped []string
			for _, g := range grouping.FindAllStringSubmatch(tg.Expr, -1) {
				for _, l := range strings.Split(g[1], ",") {
					l = strings.TrimSpace(l)
					grouped = append(grouped, l)
					assert.Contains(t, allowed, l, "%s: no metric of %q has the label %s", what, tg.Expr, l)
				}
			}
			for _, l := range legendLabel.FindAllStringSubmatch(tg.LegendFormat, -1) {
				assert.True(t, slices.Contains(grouped, l[1]), "%s: the legend's %s is not kept by %q", what, l[1], tg.Expr)
			}
		}
	}
	assert.Greater(t, queries, 10)
}
