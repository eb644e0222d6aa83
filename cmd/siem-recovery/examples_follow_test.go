package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"siem-recovery/internal/activitygen"
	"siem-recovery/recovery"
	"siem-recovery/recovery/entra/entratest"
	"siem-recovery/recovery/mcas/mcastest"
	"siem-recovery/sink/rsyslogtest"
)

// The examples of follow (docs/examples: a systemd service, a Kubernetes
// Deployment, a crontab) are checked as the recovery's are, and more: each
// one's command line is run as its supervisor would run it, with its
// environment and credentials, against the emulators of the API and of
// Entra ID, into a real rsyslog (or a file), over the seam with the retired
// agent that the runbook describes.

// agentSeam is a tenant whose SIEM agent stopped: what MCAS saved before
// and after, what the SIEM received from the agent, and what a feed that
// starts at the seam must send.
type agentSeam struct {
	api    *mcastest.Server
	entra  *entratest.Server
	caFile string // trusts both emulators: SSL_CERT_FILE
	start  time.Time
	// tail is what the SIEM received from the agent since start, as the
	// agent sent it (CEF, externalId the record's id): --exclude-ids.
	tail string
	// want are the ids a feed from start must send: saved since start, not
	// in the tail, matching the example filter.
	want []string
}

// newAgentSeam: the agent delivered until 20 minutes ago; the runbook's
// --start is a little before its last delivery. Everything is older than
// the default margin (10 minutes), so a feed reads it at once.
func newAgentSeam(t *testing.T, app entratest.App) *agentSeam {
	t.Helper()
	now := time.Now()
	s := &agentSeam{start: now.Add(-40 * time.Minute)}
	at := func(d time.Duration) int64 { return s.start.Add(d).UnixMilli() }
	type saved struct {
		created, date int64
		app           activitygen.App
		agent, want   bool // the agent delivered it; the feed must send it
	}
	office, salesforce := activitygen.App{ID: 11161, Name: "Office 365"}, activitygen.App{ID: 11114, Name: "Salesforce"}
	plan := []saved{
		{created: at(-10 * time.Minute), date: at(-10 * time.Minute), app: office, agent: true}, // before the start
		{created: at(-time.Minute), date: at(-time.Minute), app: office},                        // before the start, lost with the agent: older than the feed
		{created: at(2 * time.Minute), date: at(-5 * time.Hour), app: office, agent: true},      // the agent's last deliveries, dated hours back
		{created: at(3 * time.Minute), date: at(3 * time.Minute), app: office, agent: true},
		{created: at(5 * time.Minute), date: at(-3 * time.Hour), app: office, agent: true},
		{created: at(9 * time.Minute), date: at(9 * time.Minute), app: office, want: true}, // after the agent
		{created: at(12 * time.Minute), date: at(-4 * time.Hour), app: office, want: true},
		{created: at(15 * time.Minute), date: at(15 * time.Minute), app: salesforce}, // not the filter's
		{created: at(20 * time.Minute), date: at(20 * time.Minute), app: office, want: true},
		{created: at(25 * time.Minute), date: at(25 * time.Minute), app: office, want: true},
	}
	var acts, alerts []json.RawMessage
	var tail strings.Builder
	cef := func(id string, rt int64, name string) {
		fmt.Fprintf(&tail, "<134>1 %s mcas-agent SIEM_Agent - - - CEF:0|MCAS|SIEM_Agent|0.111.85|EVENT_CATEGORY_LOGIN|%s|0|externalId=%s rt=%d start=%d end=%d\n",
			time.UnixMilli(rt).UTC().Format(time.RFC3339), name, id, rt, rt, rt)
	}
	for i, p := range plan {
		a := activitygen.New(i, p.date)
		a.Created, a.App = p.created, p.app
		raw := a.Append(nil)
		acts = append(acts, raw)
		id := mcastest.IDs([]json.RawMessage{raw})[0]
		if p.agent && p.created >= at(0) {
			cef(id, p.date, "Log on")
		}
		if p.want {
			s.want = append(s.want, id)
		}
	}
	// Alerts, by their date: one the agent sent after the start, one after
	// the agent.
	for i, d := range []time.Duration{4 * time.Minute, 18 * time.Minute} {
		raw := activitygen.AppendAlert(nil, i, at(d))
		alerts = append(alerts, raw)
		id := mcastest.AlertIDs([]json.RawMessage{raw})[0]
		if i == 0 {
			cef(id, at(d), "Impossible travel")
		} else {
			s.want = append(s.want, id)
		}
	}
	s.tail = tail.String()
	slices.Sort(s.want)
	s.api = mcastest.New(t, mcastest.Options{Activities: acts, Alerts: alerts, TLS: true})
	s.entra = entratest.New(t, entratest.Options{OnToken: func(tok string, exp time.Time) { s.api.AcceptToken(tok, exp) }})
	s.entra.Register(entraTenant, app)
	s.caFile = writeFile(t, t.TempDir(), "ca.pem", string(s.entra.CAPEM()))
	return s
}

// externalIDs are the ids of CEF lines, sorted.
func externalIDs(t *testing.T, lines [][]byte) []string {
	t.Helper()
	id := regexp.MustCompile(`externalId=(\S+)`)
	var out []string
	for _, l := range lines {
		m := id.FindSubmatch(l)
		if m == nil {
			t.Fatalf("a line without externalId: %.300s", l)
		}
		out = append(out, string(m[1]))
	}
	slices.Sort(out)
	return out
}

// startFollow starts program with args and env in dir, as a supervisor
// would; done closes when it has exited.
func startFollow(ctx context.Context, t *testing.T, dir string, env, args []string) (*exec.Cmd, *syncBuffer, <-chan struct{}) {
	t.Helper()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir, cmd.Env = dir, append(cleanEnv(), env...)
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	return cmd, stderr, done
}

// awaitFed waits until rsyslog holds n lines, then checks their ids are
// want, each once.
func awaitFed(t *testing.T, siem *rsyslogtest.Server, want []string, stderr *syncBuffer) {
	t.Helper()
	lines := siem.AwaitCount(len(want), 30*time.Second)
	if got := externalIDs(t, lines); !slices.Equal(got, want) {
		t.Fatalf("the SIEM received %q, want %q\n%s", got, want, stderr.String())
	}
}

// probe asks url and returns its status code and body.
func probe(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// stopFollow sends SIGTERM, as systemctl stop or the kubelet does, and
// returns the exit code; the stop must come within grace.
func stopFollow(t *testing.T, cmd *exec.Cmd, done <-chan struct{}, grace time.Duration, stderr *syncBuffer) int {
	t.Helper()
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(grace):
		t.Fatalf("still running %v after SIGTERM\n%s", grace, stderr.String())
	}
	return cmd.ProcessState.ExitCode()
}

// TestExampleSystemdFollowService checks the follow service with systemd's
// verifier and for what systemd does with each exit code, then runs its
// ExecStart as systemd would: the dynamic user's credentials directory,
// its Environment= and EnvironmentFile=, the Entra application's
// certificate, TLS to a real rsyslog with the CA it is given; over the
// seam with the agent the runbook describes, it sends exactly what the
// SIEM lacks; /healthz answers on localhost; systemctl stop (SIGTERM) is
// exit 75, which the unit takes for success.
func TestExampleSystemdFollowService(t *testing.T) {
	analyze := requireTool(t, "systemd-analyze")
	const name = "siem-recovery-follow.service"
	unit := strings.ReplaceAll(readExample(t, "systemd/"+name), "/usr/local/bin/siem-recovery", binary)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", filepath.Join(dir, name)).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	s := unitSettings(unit)
	one := func(key string) string {
		t.Helper()
		if len(s[key]) != 1 {
			t.Fatalf("%s=%q: want it once", key, s[key])
		}
		return s[key][0]
	}
	execStart := strings.Fields(one("ExecStart"))
	if execStart[0] != binary || execStart[1] != "follow" {
		t.Fatalf("ExecStart: %q", execStart)
	}

	// A long-running feed: restarted on failure, for ever; a planned stop
	// (75) is a success and is not restarted; exit 5 (the API failing) is
	// restarted; 3 and 6, which no restart mends, are not.
	if typ := one("Type"); typ != "exec" && typ != "simple" {
		t.Errorf("Type=%s: follow runs until stopped", typ)
	}
	if one("Restart") != "on-failure" || one("StartLimitIntervalSec") != "0" {
		t.Errorf("Restart=%s, StartLimitIntervalSec=%s: an outage of any length must be ridden out", one("Restart"), one("StartLimitIntervalSec"))
	}
	if d, err := time.ParseDuration(one("RestartSec")); err != nil || d < 10*time.Second {
		t.Errorf("RestartSec=%s: give the API or the SIEM time between starts", one("RestartSec"))
	}
	success, prevent := strings.Fields(one("SuccessExitStatus")), strings.Fields(one("RestartPreventExitStatus"))
	if !slices.Contains(success, strconv.Itoa(exitStopped)) || slices.Contains(success, "5") {
		t.Errorf("SuccessExitStatus=%q: 75, a planned stop, is a success; 5 is not", success)
	}
	for _, code := range []int{exitTooManyCritical, exitUsage, exitInvalidProxy, exitGeneral} {
		if slices.Contains(prevent, strconv.Itoa(code)) {
			t.Errorf("RestartPreventExitStatus=%q: exit %d can mend by itself (an outage): it must restart", prevent, code)
		}
	}
	if !slices.Contains(prevent, strconv.Itoa(exitInvalidToken)) || !slices.Contains(prevent, strconv.Itoa(exitCheckpointUnusable)) {
		t.Errorf("RestartPreventExitStatus=%q: 3 and 6 never mend by themselves", prevent)
	}
	if d, err := time.ParseDuration(one("TimeoutStopSec")); err != nil || d <= stopGrace+10*time.Second {
		t.Errorf("TimeoutStopSec=%s: a stop waits up to %v for the batch in flight", one("TimeoutStopSec"), stopGrace)
	}
	// The checkpoint in the state directory; the metrics on localhost
	// only; follow's default data (activities and alerts, as the agent);
	// no --start (a feed that began goes on from its checkpoint, and would
	// warn at each start).
	if cp := flagValue(execStart, "--checkpoint"); one("StateDirectory") != "siem-recovery" || filepath.Dir(cp) != "/var/lib/siem-recovery" ||
		one("DynamicUser") != "yes" {
		t.Errorf("--checkpoint %s, StateDirectory=%s, DynamicUser=%s", cp, one("StateDirectory"), one("DynamicUser"))
	}
	if addr := flagValue(execStart, "--metrics-addr"); !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Errorf("--metrics-addr %q: on localhost", addr)
	}
	for _, flag := range []string{"--start", "--data", "--once", "--max-duration", "--poll", "--token", "--token-file"} {
		if flagValue(execStart, flag) != "" || slices.Contains(execStart, flag) {
			t.Errorf("ExecStart has %s", flag)
		}
	}
	if strings.Contains(unit, "AZURE_CLIENT_SECRET") {
		t.Error("the unit holds AZURE_CLIENT_SECRET")
	}
	doc := strings.TrimPrefix(one("Documentation"), "file://")
	if !strings.Contains(unit, "install -D -m 0644 docs/runbook.md "+doc) {
		t.Errorf("the install steps do not install %s", doc)
	}
	if one("WantedBy") != "multi-user.target" {
		t.Errorf("WantedBy=%s", one("WantedBy"))
	}

	// Under DynamicUser every input is a credential in %d.
	credentials := map[string]string{}
	for _, c := range s["LoadCredential"] {
		id, path, _ := strings.Cut(c, ":")
		credentials[id] = path
	}
	var inputs []string
	for _, flag := range []string{"--filter", "--exclude-ids", "--ca-file"} {
		inputs = append(inputs, flagValue(execStart, flag))
	}
	env := map[string]string{}
	for _, e := range s["Environment"] {
		k, v, _ := strings.Cut(e, "=")
		env[k] = v
	}
	inputs = append(inputs, env["AZURE_CLIENT_CERTIFICATE_PATH"])
	for _, path := range inputs {
		if id, ok := strings.CutPrefix(path, "%d/"); !ok || credentials[id] == "" {
			t.Errorf("%q: under DynamicUser= an input must be a LoadCredential= credential", path)
		}
	}
	// agent-tail.txt has a default, so that the unit starts once the file
	// is removed after the first start: one that names no id.
	id, def, _ := strings.Cut(one("SetCredential"), ":")
	if id != "agent-tail.txt" || credentials[id] == "" {
		t.Fatalf("SetCredential=%s: want the default of agent-tail.txt", one("SetCredential"))
	}
	if set, err := recovery.ReadIDSet(strings.NewReader(def)); err != nil || set.Len() != 0 {
		t.Fatalf("agent-tail.txt's default %q: %v, %d ids", def, err, set.Len())
	}
	envFile, optional := strings.CutPrefix(one("EnvironmentFile"), "-")
	if !optional || filepath.Dir(envFile) != "/etc/siem-recovery" {
		t.Fatalf("EnvironmentFile=%s: the first start's --start, optional", one("EnvironmentFile"))
	}

	// Run it as systemd would, at the seam with the agent: the credentials
	// copied into %d, the first start's environment file, the Entra
	// application's certificate.
	cert := entratest.NewCertificate(t, "siem-recovery", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	seam := newAgentSeam(t, entratest.App{ClientID: env["AZURE_CLIENT_ID"], Certificate: cert.Cert})
	if env["AZURE_TENANT_ID"] != entraTenant {
		t.Fatalf("AZURE_TENANT_ID=%s, want the example tenant %s", env["AZURE_TENANT_ID"], entraTenant)
	}
	pki := rsyslogtest.NewPKI(t)
	siem := rsyslogtest.Start(t, rsyslogtest.Config{Transport: rsyslogtest.TLS, PKI: pki})
	creds, state, etc := t.TempDir(), t.TempDir(), t.TempDir()
	ca, err := os.ReadFile(pki.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	for id, content := range map[string]string{"filter.json": readExample(t, "filter.json"), "siem-ca.pem": string(ca),
		"entra.pem": string(cert.PEM), "agent-tail.txt": seam.tail} {
		if credentials[id] == "" {
			t.Fatalf("no LoadCredential= for %s", id)
		}
		writeFile(t, creds, id, content)
	}
	writeFile(t, etc, filepath.Base(envFile), "SIEM_RECOVERY_START="+seam.start.UTC().Format(time.RFC3339Nano)+"\n")
	metrics := "127.0.0.1:" + strconv.Itoa(rsyslogtest.FreePort(t, "tcp"))
	local := strings.NewReplacer("%d", creds, "/var/lib/siem-recovery/", state+"/",
		"https://contoso.eu2.portal.cloudappsecurity.com", seam.api.URL, "siem.contoso.com:6514", siem.Addr,
		flagValue(execStart, "--metrics-addr"), metrics)
	var args []string
	for _, a := range execStart {
		args = append(args, local.Replace(a))
	}
	procEnv := []string{"SSL_CERT_FILE=" + seam.caFile, "AZURE_AUTHORITY_HOST=" + seam.entra.URL}
	for k, v := range env {
		procEnv = append(procEnv, k+"="+local.Replace(v))
	}
	envLines, err := os.ReadFile(filepath.Join(etc, filepath.Base(envFile)))
	if err != nil {
		t.Fatal(err)
	}
	procEnv = append(procEnv, strings.Fields(string(envLines))...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd, stderr, done := startFollow(ctx, t, t.TempDir(), procEnv, args)
	awaitFed(t, siem, seam.want, stderr)
	if code, body := probe(t, "http://"+metrics+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	feedSent := func(st statusReport) int64 {
		sent := st.Sent
		for _, s := range st.Streams {
			sent += s.Sent
		}
		return sent
	}
	// The checkpoint notes a batch once the sink confirmed it: a moment
	// after rsyslog wrote it.
	st := awaitStatus(ctx, t, t.TempDir(), filepath.Join(state, filepath.Base(flagValue(execStart, "--checkpoint"))),
		func(st statusReport) bool { return feedSent(st) >= int64(len(seam.want)) })
	if sent := feedSent(st); !st.Feed || st.State != recovery.FeedRunning || sent != int64(len(seam.want)) || st.FeedStart != recovery.FormatMillis(seam.start.UnixMilli()) {
		t.Errorf("status: feed %v, state %s, %d sent, began %s", st.Feed, st.State, sent, st.FeedStart)
	}
	if code := stopFollow(t, cmd, done, 45*time.Second, stderr); !slices.Contains(success, strconv.Itoa(code)) {
		t.Fatalf("systemctl stop: exit %d, which the unit takes for a failure\n%s", code, stderr.String())
	}
	if got := externalIDs(t, siem.Lines()); !slices.Equal(got, seam.want) {
		t.Fatalf("in the end the SIEM holds %q, want %q", got, seam.want)
	}
	key := cert.PEM[bytes.Index(cert.PEM, []byte("-----BEGIN PRIVATE KEY-----\n"))+28:][:40]
	if strings.Contains(stderr.String(), string(key)) {
		t.Fatal("the certificate's key shows in the log")
	}
}

// deployment is the part of a Deployment (and of the other objects of
// follow.yaml) the example is checked for.
type deployment struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name        string            `yaml:"name"`
		Namespace   string            `yaml:"namespace"`
		Annotations map[string]string `yaml:"annotations"`
	} `yaml:"metadata"`
	Spec struct {
		Replicas *int `yaml:"replicas"`
		Strategy struct {
			Type string `yaml:"type"`
		} `yaml:"strategy"`
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
			Spec podSpec `yaml:"spec"`
		} `yaml:"template"`
		// A Service's.
		Ports []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort any    `yaml:"targetPort"`
		} `yaml:"ports"`
		AccessModes []string `yaml:"accessModes"`
	} `yaml:"spec"`
}

// container is the part of the Deployment's container the example is
// checked for, beyond podSpec's.
type container struct {
	Image string   `yaml:"image"`
	Args  []string `yaml:"args"`
	Env   []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom struct {
			ConfigMapKeyRef struct {
				Name     string `yaml:"name"`
				Key      string `yaml:"key"`
				Optional bool   `yaml:"optional"`
			} `yaml:"configMapKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	LivenessProbe struct {
		HTTPGet struct {
			Path string `yaml:"path"`
			Port any    `yaml:"port"`
		} `yaml:"httpGet"`
		PeriodSeconds    int `yaml:"periodSeconds"`
		FailureThreshold int `yaml:"failureThreshold"`
	} `yaml:"livenessProbe"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

// TestExampleKubernetesFollow checks the Deployment: one replica replaced
// by Recreate (two feeds never share the checkpoint), the checkpoint on the
// persistent volume, workload identity as the CronJob's, the liveness probe
// on /healthz at the metrics port, the Service Prometheus scrapes, a grace
// period above the stop's; then runs the container's command line with what
// the workload identity webhook injects (a projected service account token
// for the manifest's account) and the first start's ConfigMap, into a real
// rsyslog over TCP: it sends exactly what the SIEM lacks, answers the
// probe, and stops with 75 on SIGTERM within the grace period.
func TestExampleKubernetesFollow(t *testing.T) {
	docs := kubernetesDocs[deployment](t, "kubernetes/follow.yaml")
	byKind := map[string]deployment{}
	for _, d := range docs {
		if _, dup := byKind[d.Kind]; dup {
			t.Fatalf("two %s in follow.yaml", d.Kind)
		}
		byKind[d.Kind] = d
	}
	dep, sa, svc, pvc := byKind["Deployment"], byKind["ServiceAccount"], byKind["Service"], byKind["PersistentVolumeClaim"]
	if dep.Kind == "" || sa.Kind == "" || svc.Kind == "" || pvc.Kind == "" || len(docs) != 4 {
		t.Fatalf("kinds %v: want a ServiceAccount, a PersistentVolumeClaim, a Deployment and a Service", slices.Collect(maps.Keys(byKind)))
	}
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 1 || dep.Spec.Strategy.Type != "Recreate" {
		t.Fatalf("replicas %v, strategy %q: one feed, never two at once on the checkpoint", dep.Spec.Replicas, dep.Spec.Strategy.Type)
	}
	if !slices.Equal(pvc.Spec.AccessModes, []string{"ReadWriteOnce"}) {
		t.Errorf("the claim's access modes %v", pvc.Spec.AccessModes)
	}
	pod := dep.Spec.Template.Spec
	labels := dep.Spec.Template.Metadata.Labels
	for k, v := range dep.Spec.Selector.MatchLabels {
		if labels[k] != v {
			t.Fatalf("the selector %v does not select the pods %v", dep.Spec.Selector.MatchLabels, labels)
		}
	}
	// Workload identity, as the CronJob's.
	if sa.Metadata.Annotations["azure.workload.identity/client-id"] == "" || labels["azure.workload.identity/use"] != "true" ||
		pod.ServiceAccountName != sa.Metadata.Name || dep.Metadata.Namespace != sa.Metadata.Namespace {
		t.Fatalf("workload identity: the annotated ServiceAccount %q, the pod's %q and its label %q",
			sa.Metadata.Name, pod.ServiceAccountName, labels["azure.workload.identity/use"])
	}
	if grace := time.Duration(pod.TerminationGracePeriodSeconds) * time.Second; grace <= stopGrace+10*time.Second {
		t.Errorf("terminationGracePeriodSeconds %v: a stop waits up to %v for the batch in flight", grace, stopGrace)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Containers))
	}
	softMemoryLimit(t, "Deployment", pod.Containers[0])
	// The image and user are the CronJob's, the Dockerfile's.
	type cronJob struct {
		Kind string `yaml:"kind"`
		Spec struct {
			JobTemplate struct {
				Spec struct {
					Template struct {
						Spec podSpec `yaml:"spec"`
					} `yaml:"template"`
				} `yaml:"spec"`
			} `yaml:"jobTemplate"`
		} `yaml:"spec"`
	}
	for _, cj := range kubernetesDocs[cronJob](t, "kubernetes/cronjob.yaml") {
		if cj.Kind == "CronJob" {
			job := cj.Spec.JobTemplate.Spec.Template.Spec
			if job.Containers[0].Image != pod.Containers[0].Image || job.SecurityContext.RunAsUser != pod.SecurityContext.RunAsUser {
				t.Errorf("image %q as %d, the CronJob's %q as %d", pod.Containers[0].Image, pod.SecurityContext.RunAsUser,
					job.Containers[0].Image, job.SecurityContext.RunAsUser)
			}
		}
	}
	type withContainers struct {
		Spec struct {
			Template struct {
				Spec struct {
					Containers []container `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	var c container
	for _, d := range kubernetesDocs[withContainers](t, "kubernetes/follow.yaml") {
		if cs := d.Spec.Template.Spec.Containers; len(cs) == 1 {
			c = cs[0]
		}
	}
	args := c.Args
	if len(args) == 0 || args[0] != "follow" {
		t.Fatalf("args %q", args)
	}
	joined := strings.Join(args, " ")
	if !strings.Contains(joined, "--checkpoint=/data/") || !strings.Contains(joined, "--auth=entra") || strings.Contains(joined, "--token") ||
		strings.Contains(joined, "--start") || strings.Contains(joined, "--once") || strings.Contains(joined, "--max-duration") || strings.Contains(joined, "--data") {
		t.Fatalf("args %s: the checkpoint on /data, workload identity, no token; no --start, --once, --max-duration; follow's default data", joined)
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	for _, v := range pod.Volumes {
		if claim, ok := v["persistentVolumeClaim"].(map[string]any); ok && (claim["claimName"] != pvc.Metadata.Name || mounts[v["name"].(string)] != "/data") {
			t.Fatalf("the claim %v is not mounted on /data", claim)
		}
	}
	// The metrics: the port --metrics-addr listens on, probed on /healthz,
	// scraped through the Service.
	_, port, _ := strings.Cut(flagValue(args, "--metrics-addr"), ":")
	if len(c.Ports) != 1 || strconv.Itoa(c.Ports[0].ContainerPort) != port || c.LivenessProbe.HTTPGet.Path != "/healthz" ||
		fmt.Sprint(c.LivenessProbe.HTTPGet.Port) != c.Ports[0].Name {
		t.Fatalf("--metrics-addr %s, ports %+v, liveness probe %+v", flagValue(args, "--metrics-addr"), c.Ports, c.LivenessProbe)
	}
	if period := time.Duration(c.LivenessProbe.PeriodSeconds*max(c.LivenessProbe.FailureThreshold, 1)) * time.Second; period > time.Hour {
		t.Errorf("the liveness probe gives up after %v", period)
	}
	if svc.Metadata.Annotations["prometheus.io/scrape"] != "true" || svc.Metadata.Annotations["prometheus.io/port"] != port ||
		svc.Metadata.Annotations["prometheus.io/path"] != "/metrics" || len(svc.Spec.Ports) != 1 ||
		fmt.Sprint(svc.Spec.Ports[0].TargetPort) != c.Ports[0].Name || svc.Metadata.Namespace != dep.Metadata.Namespace {
		t.Fatalf("the Service: %+v %+v", svc.Metadata, svc.Spec.Ports)
	}
	type service struct {
		Spec struct {
			Selector map[string]any `yaml:"selector"` // a Deployment's is not a Service's
		} `yaml:"spec"`
		Kind string `yaml:"kind"`
	}
	for _, s := range kubernetesDocs[service](t, "kubernetes/follow.yaml") {
		if s.Kind == "Service" {
			for k, v := range s.Spec.Selector {
				if labels[k] != v {
					t.Fatalf("the Service selects %v, the pods are %v", s.Spec.Selector, labels)
				}
			}
		}
	}
	// The first start's --start and --exclude-ids come from an optional
	// ConfigMap, mounted on the path its exclude-ids names.
	startEnv := map[string]string{} // env name → the ConfigMap's key
	for _, e := range c.Env {
		ref := e.ValueFrom.ConfigMapKeyRef
		if e.Name == "GOMEMLIMIT" {
			continue // a value of its own, checked above
		}
		if ref.Name == "" || !ref.Optional {
			t.Fatalf("env %s: from an optional ConfigMap, so that the feed runs without it", e.Name)
		}
		startEnv[e.Name] = ref.Key
	}
	if startEnv["SIEM_RECOVERY_START"] == "" || startEnv["SIEM_RECOVERY_EXCLUDE_IDS"] == "" || mounts["start"] != "/start" {
		t.Fatalf("env %v, mounts %v", startEnv, mounts)
	}

	// Run the container's command line with what the webhook injects, the
	// ConfigMaps' files where they are mounted.
	issuer := entratest.NewServiceAccountIssuer(t, "https://oidc.aks.example/cluster-1/")
	subject := "system:serviceaccount:" + sa.Metadata.Namespace + ":" + sa.Metadata.Name
	clientID := sa.Metadata.Annotations["azure.workload.identity/client-id"]
	seam := newAgentSeam(t, entratest.App{ClientID: clientID, Federated: issuer.Credential(subject)})
	siem := rsyslogtest.Start(t, rsyslogtest.Config{Transport: rsyslogtest.TCP})
	data, input, start := t.TempDir(), t.TempDir(), t.TempDir()
	writeFile(t, input, "filter.json", readExample(t, "filter.json"))
	writeFile(t, start, "agent-tail.txt", seam.tail)
	token := writeFile(t, t.TempDir(), "token", issuer.Token(t, subject, time.Hour))
	metrics := "127.0.0.1:" + strconv.Itoa(rsyslogtest.FreePort(t, "tcp"))
	local := strings.NewReplacer("/data/", data+"/", "/input/", input+"/", "/start/", start+"/",
		"https://contoso.eu2.portal.cloudappsecurity.com", seam.api.URL, "tcp://siem.contoso.com:514", "tcp://"+siem.Addr,
		"--metrics-addr="+flagValue(args, "--metrics-addr"), "--metrics-addr="+metrics)
	run := []string{binary}
	for _, a := range args {
		run = append(run, local.Replace(a))
	}
	configMap := map[string]string{"start": seam.start.UTC().Format(time.RFC3339Nano), "exclude-ids": "/start/agent-tail.txt"}
	env := []string{"SSL_CERT_FILE=" + seam.caFile, "AZURE_AUTHORITY_HOST=" + seam.entra.URL, "AZURE_TENANT_ID=" + entraTenant,
		"AZURE_CLIENT_ID=" + clientID, "AZURE_FEDERATED_TOKEN_FILE=" + token}
	for name, key := range startEnv {
		if configMap[key] == "" {
			t.Fatalf("env %s takes the key %q, which the runbook's ConfigMap lacks", name, key)
		}
		env = append(env, name+"="+local.Replace(configMap[key]))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd, stderr, done := startFollow(ctx, t, t.TempDir(), env, run)
	awaitFed(t, siem, seam.want, stderr)
	if code, body := probe(t, "http://"+metrics+c.LivenessProbe.HTTPGet.Path); code != 200 || body != "ok\n" {
		t.Errorf("the liveness probe: %d %q", code, body)
	}
	// The counters count a cycle once it is done: a moment after rsyslog
	// wrote its last line.
	for scraped := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		code, body := probe(t, "http://"+metrics+svc.Metadata.Annotations["prometheus.io/path"])
		if code == 200 && strings.Contains(body, fmt.Sprintf("\nsiem_recovery_events_sent_total{data=\"activities\"} %d\n", len(seam.want)-1)) &&
			strings.Contains(body, "\nsiem_recovery_events_sent_total{data=\"alerts\"} 1\n") {
			break
		}
		if time.Since(scraped) > 30*time.Second {
			t.Fatalf("the scrape: %d\n%.3000s", code, body)
		}
	}
	grace := time.Duration(pod.TerminationGracePeriodSeconds) * time.Second
	if code := stopFollow(t, cmd, done, grace, stderr); code != exitStopped {
		t.Fatalf("SIGTERM: exit %d, want 75\n%s", code, stderr.String())
	}
	if got := externalIDs(t, siem.Lines()); !slices.Equal(got, seam.want) {
		t.Fatalf("in the end the SIEM holds %q, want %q", got, seam.want)
	}
	if strings.Contains(stderr.String(), strings.TrimSpace(readFileString(t, token))[:40]) {
		t.Fatal("the service account token shows in the log")
	}
}

func readFileString(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestExampleCrontabFollow runs the follow crontab's entries as cron would
// (through /bin/sh, their output being what cron mails), against the
// emulator: the first run by hand at the seam with the agent, as the
// crontab's comment says, sends what the SIEM lacks; each entry's run
// after sends only what is new and mails nothing; a failed run mails one
// line with its exit code, and the hourly check the failed state; a run
// and its stop fit the 5-minute slot.
func TestExampleCrontabFollow(t *testing.T) {
	text := readExample(t, "crontab-follow")
	vars := map[string]string{}
	var commands []string
	schedule := regexp.MustCompile(`^((\S+\s+){5})`)
	var slots []string
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if m := regexp.MustCompile(`^([A-Z_]+)=(.*)$`).FindStringSubmatch(line); m != nil {
			vars[m[1]] = m[2]
			continue
		}
		m := schedule.FindStringSubmatch(line)
		if m == nil || strings.Contains(line, "%") {
			t.Fatalf("not a crontab entry cron runs as written: %q", line)
		}
		slots = append(slots, strings.TrimSpace(m[1]))
		commands = append(commands, line[len(m[1]):])
	}
	if strings.Trim(vars["MAILTO"], `"' `) == "" || vars["SHELL"] != "/bin/sh" {
		t.Fatalf("MAILTO=%q, SHELL=%q: failures must be mailed to someone", vars["MAILTO"], vars["SHELL"])
	}
	if len(commands) != 2 || !strings.HasPrefix(commands[0], "/usr/local/bin/siem-recovery follow --once ") ||
		!strings.HasPrefix(commands[1], "/usr/local/bin/siem-recovery status ") || slots[0] != "*/5 * * * *" {
		t.Fatalf("entries %q %q: want follow --once every 5 minutes, then the hourly status check", slots, commands)
	}
	feed := strings.Fields(strings.SplitN(commands[0], ">>", 2)[0])
	if d, err := time.ParseDuration(flagValue(feed, "--max-duration")); err != nil || d+stopGrace >= 5*time.Minute {
		t.Fatalf("--max-duration %q: a run and its stop must fit the 5-minute slot", flagValue(feed, "--max-duration"))
	}
	for _, flag := range []string{"--start", "--exclude-ids", "--data", "--metrics-addr"} {
		if slices.Contains(feed, flag) {
			t.Errorf("the entry has %s", flag)
		}
	}
	for _, want := range []string{"useradd --system", "install -d -o siem-recovery", "crontab -u siem-recovery docs/examples/crontab-follow",
		"--start 2026-11-30T07:00:00Z --exclude-ids agent-tail.txt", "sudo -u siem-recovery"} {
		if !strings.Contains(text, want) {
			t.Errorf("the crontab's setup lacks %q", want)
		}
	}
	if !strings.Contains(readExample(t, "logrotate/siem-recovery"), "/var/log/siem-recovery/feed.log") {
		t.Error("the logrotate example does not rotate feed.log")
	}
	host, _ := os.Hostname()

	// The emulator with a token, as a legacy API token; the margin is cut
	// to a second (the entry leaves it to its default, 10 minutes), so that
	// what is saved during the test is read by the next run.
	seam := newAgentSeam(t, entratest.App{ClientID: entraClient, Secret: entraSecret})
	dir := t.TempDir()
	etc, lib, logs := filepath.Join(dir, "etc"), filepath.Join(dir, "lib"), filepath.Join(dir, "log")
	for _, d := range []string{etc, lib, logs} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, etc, "filter.json", readExample(t, "filter.json"))
	writeFile(t, etc, "token", seam.api.Token()+"\n")
	writeFile(t, dir, "agent-tail.txt", seam.tail)
	out := filepath.Join(dir, "siem.cef")
	local := strings.NewReplacer("/usr/local/bin/siem-recovery", binary, "/etc/siem-recovery/", etc+"/", "/var/lib/siem-recovery/", lib+"/",
		"/var/log/siem-recovery/", logs+"/", "https://contoso.eu2.portal.cloudappsecurity.com", seam.api.URL,
		"tcp://siem.contoso.com:514", "file:"+out)
	env := []string{"SSL_CERT_FILE=" + seam.caFile, "SIEM_RECOVERY_SETTLE_MARGIN=1s"}
	entry := func(i int, extra string) result {
		t.Helper()
		line := local.Replace(commands[i])
		if extra != "" {
			line = strings.Replace(line, " >>", " "+extra+" >>", 1)
		}
		if strings.Contains(line, "contoso") {
			t.Fatalf("the sandboxed entry still names a host: %s", line)
		}
		return runShell(t, dir, env, line)
	}
	delivered := func() []string {
		t.Helper()
		var lines [][]byte
		for _, l := range strings.Split(strings.TrimSpace(readFileString(t, out)), "\n") {
			lines = append(lines, []byte(l))
		}
		return externalIDs(t, lines)
	}

	// The first run, by hand, at the seam.
	first := entry(0, "--start "+seam.start.UTC().Format(time.RFC3339Nano)+" --exclude-ids agent-tail.txt")
	if first.code != 0 || first.stdout != "" || first.stderr != "" {
		t.Fatalf("the first run: exit %d, mailed %q%q\n%s", first.code, first.stdout, first.stderr, readFileString(t, filepath.Join(logs, "feed.log")))
	}
	if got := delivered(); !slices.Equal(got, seam.want) {
		t.Fatalf("the first run sent %q, want %q", got, seam.want)
	}
	// Then the entry, each slot: only what is new, nothing mailed.
	fresh := activitygen.New(100, time.Now().Add(-2*time.Hour).UnixMilli())
	fresh.Created, fresh.App = time.Now().UnixMilli(), activitygen.App{ID: 11161, Name: "Office 365"}
	raw := fresh.Append(nil)
	seam.api.Add(t, raw)
	time.Sleep(1100 * time.Millisecond) // past the margin
	for range 2 {
		if r := entry(0, ""); r.code != 0 || r.stdout != "" || r.stderr != "" {
			t.Fatalf("a slot: exit %d, mailed %q%q\n%s", r.code, r.stdout, r.stderr, readFileString(t, filepath.Join(logs, "feed.log")))
		}
	}
	want := append(slices.Clone(seam.want), mcastest.IDs([]json.RawMessage{raw})[0])
	slices.Sort(want)
	if got := delivered(); !slices.Equal(got, want) {
		t.Fatalf("after two slots the SIEM holds %q, want %q", got, want)
	}
	if log := readFileString(t, filepath.Join(logs, "feed.log")); strings.Contains(log, `"level":"WARN"`) || !strings.Contains(log, `"msg":"caught up"`) {
		t.Errorf("the feed's log:\n%s", log)
	}
	if r := entry(1, ""); r.stdout != "" || r.stderr != "" {
		t.Fatalf("the hourly check of a healthy feed mailed %q%q", r.stdout, r.stderr)
	}

	// The API refuses the token from now on (revoked): the slot fails with
	// 3, mails one line, and the hourly check mails the failed state.
	writeFile(t, etc, "token", strings.Repeat("x", 64)+"\n")
	failed := entry(0, "")
	wantMail := "siem-recovery follow exited 3 on " + host + ": see " + logs + "/feed.log and siem-recovery status --checkpoint " + lib + "/feed.db\n"
	if failed.stdout != wantMail || failed.stderr != "" {
		t.Fatalf("a failed slot mailed %q%q, want %q", failed.stdout, failed.stderr, wantMail)
	}
	if r := entry(1, ""); !strings.HasPrefix(r.stdout, "state:         failed\n") || r.stderr != "" {
		t.Fatalf("the hourly check of a failed feed mailed %q%q", r.stdout, r.stderr)
	}
}

// TestRunbookFollowFirstStart runs the runbook's first start of a feed (its
// "Replace the retired SIEM agent", step 3) and the verify of step 2 at the
// seam with the agent: verify lists the activities the SIEM lacks, and the
// first start sends those and the alerts the agent never sent, nothing the
// SIEM holds, and exits 0.
func TestRunbookFollowFirstStart(t *testing.T) {
	block := runbookBlock(t, "(?s)```sh\n\\s*(siem-recovery follow --once .*?)```", "the first start of a feed")
	line := strings.ReplaceAll(block, "\\\n", " ")
	seam := newAgentSeam(t, entratest.App{ClientID: entraClient, Secret: entraSecret})
	dir := t.TempDir()
	writeFile(t, dir, "token", seam.api.Token()+"\n")
	writeFile(t, dir, "filter.json", readExample(t, "filter.json"))
	writeFile(t, dir, "agent-tail.txt", seam.tail)
	local := strings.NewReplacer("siem-recovery follow", binary+" follow", "2026-11-30T07:00:00Z", seam.start.UTC().Format(time.RFC3339Nano),
		"https://TENANT.REGION.portal.cloudappsecurity.com", seam.api.URL, "tcp://siem.example.com:514", "file:siem.cef",
		"/var/lib/siem-recovery/", dir+"/")
	env := []string{"SSL_CERT_FILE=" + seam.caFile}

	// Step 2's verify: the activities the first start will send.
	args := strings.Fields(local.Replace(line))
	verify := runBin(t, dir, env, "verify", "--by", "created", "--start", flagValue(args, "--start"),
		"--end", time.Now().Add(-10*time.Minute).UTC().Format(time.RFC3339), "--source", seam.api.URL, "--token-file", "token",
		"--filter", "filter.json", "--received", "agent-tail.txt")
	wantCode(t, verify, exitMissing)
	for _, id := range seam.want[:len(seam.want)-1] { // the activities; the last is the alert
		if !strings.Contains(verify.stdout, id) {
			t.Errorf("verify does not list %s:\n%s", id, verify.stdout)
		}
	}

	r := runShell(t, dir, env, local.Replace(line))
	wantCode(t, r, 0)
	wantStderr(t, r, `msg="caught up"`)
	var lines [][]byte
	for _, l := range strings.Split(strings.TrimSpace(readFileString(t, filepath.Join(dir, "siem.cef"))), "\n") {
		lines = append(lines, []byte(l))
	}
	if got := externalIDs(t, lines); !slices.Equal(got, seam.want) {
		t.Fatalf("the first start sent %q, want %q", got, seam.want)
	}
}
