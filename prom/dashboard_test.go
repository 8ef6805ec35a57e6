package prom_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// dashboardExprs returns every PromQL expression of the Grafana dashboard.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../examples/prometheus/dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("dashboard.json: %v", err)
	}
	var exprs []string
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if e, ok := x["expr"].(string); ok {
				exprs = append(exprs, e)
			}
			for _, c := range x {
				walk(c)
			}
		case []any:
			for _, c := range x {
				walk(c)
			}
		}
	}
	walk(doc)
	return exprs
}

// TestDashboard: the dashboard parses, every expression names only
// metrics the collector exports, and (with promtool on PATH; CI requires
// it with KAFKAWAL_REQUIRE_PROMTOOL=1) every expression is valid PromQL
// once Grafana's variables are given values.
func TestDashboard(t *testing.T) {
	exprs := dashboardExprs(t)
	if len(exprs) < 10 {
		t.Fatalf("%d expressions in dashboard.json", len(exprs))
	}
	names := regexp.MustCompile(`kafkawal_[a-z_]+`)
	seen := map[string]bool{}
	for _, e := range exprs {
		for _, n := range names.FindAllString(e, -1) {
			base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_count"), "_sum")
			if _, ok := exported[base]; !ok && !slices.Contains(pending, base) {
				t.Errorf("dashboard expression %q uses %s, which the collector does not export", e, n)
			}
			seen[base] = true
		}
	}
	if len(seen) < 12 {
		t.Errorf("the dashboard shows only %d metrics", len(seen))
	}

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("KAFKAWAL_REQUIRE_PROMTOOL") == "1" {
			t.Fatal("promtool not found and KAFKAWAL_REQUIRE_PROMTOOL=1")
		}
		t.Log("promtool not on PATH: PromQL syntax not checked (examples/prometheus/check.sh checks it)")
		return
	}
	grafana := strings.NewReplacer("$__rate_interval", "5m", "$__range", "1h", "$producer", ".*")
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, e := range exprs {
		q, _ := json.Marshal(grafana.Replace(e))
		fmt.Fprintf(&rules, "      - record: dashboard_expr_%d\n        expr: %s\n", i, q)
	}
	path := filepath.Join(t.TempDir(), "dashboard_rules.yml")
	if err := os.WriteFile(path, []byte(rules.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules on the dashboard's expressions: %v\n%s", err, out)
	}
}
