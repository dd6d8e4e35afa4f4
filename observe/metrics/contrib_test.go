package metrics

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ds01/ds01-gateway/gateway"
	"github.com/ds01/ds01-gateway/store"
)

// The alert rules and the dashboard in contrib/ are checked against the
// exporter: promtool accepts the rules and their unit tests pass, every
// dashboard query parses, and every ds01_ metric either names is one the
// exporter serves.

const (
	rulesFile     = "../../contrib/prometheus/ds01-rules.yml"
	rulesTestFile = "../../contrib/prometheus/ds01-rules_test.yml"
	dashboardFile = "../../contrib/grafana/ds01-gateway.json"
)

func TestAlertRules(t *testing.T) {
	promtool := lookPromtool(t)
	for _, args := range [][]string{{"check", "rules", rulesFile}, {"test", "rules", rulesTestFile}} {
		if out, err := exec.Command(promtool, args...).CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// dashboardQueries is every PromQL expression of the dashboard's panels.
func dashboardQueries(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	var exprs []string
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	if len(exprs) < 10 {
		t.Fatalf("dashboard %q has %d queries", d.Title, len(exprs))
	}
	return exprs
}

// Every query parses: promtool checks each as a recording rule.
func TestDashboardQueriesParse(t *testing.T) {
	promtool := lookPromtool(t)
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, e := range dashboardQueries(t) {
		q, _ := json.Marshal(e) // a JSON string is a YAML string
		fmt.Fprintf(&b, "      - record: dashboard_query_%d\n        expr: %s\n", i, q)
	}
	path := filepath.Join(t.TempDir(), "dashboard-rules.yml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput(); err != nil {
		t.Errorf("dashboard queries: %v\n%s", err, out)
	}
}

var metricRE = regexp.MustCompile(`\bds01_[a-z_]+`)

// The rules and the dashboard name only metrics the exporter serves.
func TestContribMetricNames(t *testing.T) {
	src := twoGPUs()
	m := newTestMetrics(src)
	m.Refresh()
	m.SessionStarted("alice")
	m.OnEvent(store.Event{Type: "container.launch"})
	m.AuthFailed(gateway.AuthTimeout)
	m.Login(gateway.LoginCold, time.Second)
	served := map[string]bool{}
	for _, line := range strings.Split(scrapeText(t, m), "\n") {
		if name, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, typ, _ := strings.Cut(name, " ")
			served[name] = true
			if typ == "histogram" {
				for _, s := range []string{"_bucket", "_sum", "_count"} {
					served[name+s] = true
				}
			}
		}
	}
	rules, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	texts := append(dashboardQueries(t), string(rules))
	for _, text := range texts {
		for _, name := range metricRE.FindAllString(text, -1) {
			if !served[name] {
				t.Errorf("%s is not served by the exporter (in %q)", name, clip(text))
			}
		}
	}
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
