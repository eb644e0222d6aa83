package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// The deployment examples under docs/examples are checked here: each is
// valid for its tool, the siem-recovery command line in it parses (the run
// gets as far as reading the alert file, which does not exist on this
// machine), and each surfaces failures: a failed run reaches a person,
// a planned stop does not.

func requireTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is missing: CI must install it", name)
		}
		t.Skipf("%s is not installed", name)
	}
	return path
}

// checkCommandLine runs the binary with an example's arguments and checks
// that they parse: every flag exists and the run reaches the alert file.
func checkCommandLine(t *testing.T, where string, args []string) {
	t.Helper()
	if len(args) == 0 || args[0] != "run" {
		t.Fatalf("%s: the command line does not start with run: %q", where, args)
	}
	r := runBin(t, t.TempDir(), nil, args...)
	if r.code != exitUsage || !strings.Contains(r.stderr, "cannot read the alert file /") {
		t.Fatalf("%s: %q does not parse: exit %d\n%s", where, args, r.code, r.stderr)
	}
}

func readExample(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "docs/examples", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// sandbox is a copy of the places an example names (/etc/siem-recovery,
// /var/lib/siem-recovery, /var/log/siem-recovery) in a temporary
// directory, with the example alert and filter, and the replacements that
// point an example's text there; the tenant and the SIEM become the bundled
// export and a file, so that nothing leaves the machine.
type sandbox struct {
	etc, lib, log, out string
	replace            *strings.Replacer
}

func newSandbox(t *testing.T) sandbox {
	t.Helper()
	dir := t.TempDir()
	s := sandbox{etc: filepath.Join(dir, "etc"), lib: filepath.Join(dir, "lib"), log: filepath.Join(dir, "log"), out: filepath.Join(dir, "siem.cef")}
	for _, d := range []string{s.etc, s.lib, s.log} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, s.etc, "alert.json", readExample(t, "alert.json"))
	writeFile(t, s.etc, "filter.json", readExample(t, "filter.json"))
	writeFile(t, s.etc, "token", strings.Repeat("t", 64)+"\n")
	s.replace = strings.NewReplacer(
		"/usr/local/bin/siem-recovery", binary,
		"/etc/siem-recovery/", s.etc+"/",
		"/var/lib/siem-recovery/", s.lib+"/",
		"/var/log/siem-recovery/", s.log+"/",
		"https://contoso.eu2.portal.cloudappsecurity.com", "file:"+filepath.Join(dir, "export.jsonl"),
		"tcp://siem.contoso.com:514", "file:"+s.out,
	)
	writeFile(t, dir, "export.jsonl", readExample(t, "activities.jsonl"))
	return s
}

// crontabEntries returns the example crontab's variables and entries (the
// command of each, after its five schedule fields).
func crontabEntries(t *testing.T) (vars map[string]string, commands []string) {
	t.Helper()
	schedule := regexp.MustCompile(`^(\S+\s+){5}`)
	vars = map[string]string{}
	for _, line := range strings.Split(readExample(t, "crontab"), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if m := regexp.MustCompile(`^([A-Z_]+)=(.*)$`).FindStringSubmatch(line); m != nil {
			vars[m[1]] = m[2]
			continue
		}
		if !schedule.MatchString(line) {
			t.Fatalf("not a crontab entry: %q", line)
		}
		if strings.Contains(line, "%") {
			t.Fatalf("cron turns %% into a newline: %q", line)
		}
		commands = append(commands, schedule.ReplaceAllString(line, ""))
	}
	return vars, commands
}

// TestExampleCrontab runs the crontab's entries as cron would (through
// /bin/sh, their output being what cron mails) against the bundled export:
// a run that completes or stops mails nothing; a run that fails mails one
// line with its exit code; the hourly check mails the state of a failed
// recovery and nothing for a healthy one.
func TestExampleCrontab(t *testing.T) {
	vars, commands := crontabEntries(t)
	if mail := strings.Trim(vars["MAILTO"], `"' `); mail == "" || vars["SHELL"] != "/bin/sh" {
		t.Fatalf("MAILTO=%q, SHELL=%q: failures must be mailed to someone", vars["MAILTO"], vars["SHELL"])
	}
	if len(commands) != 2 || !strings.Contains(commands[0], "/usr/local/bin/siem-recovery run ") || !strings.Contains(commands[1], "/usr/local/bin/siem-recovery status ") {
		t.Fatalf("entries %q: want the run, then the hourly status check", commands)
	}
	run := strings.Fields(strings.SplitN(commands[0], ">>", 2)[0])
	checkCommandLine(t, "crontab", run[1:])
	if flagValue(run, "--settle") != "24h" {
		t.Errorf("the crontab's run: --settle %q, want 24h: a day of late arrivals, then quiet", flagValue(run, "--settle"))
	}
	wantByCreated(t, "the crontab's run", run)
	setup := readExample(t, "crontab")
	for _, want := range []string{"useradd --system", "install -d -o siem-recovery", "/var/log/siem-recovery", "/etc/logrotate.d/siem-recovery", "crontab -u siem-recovery"} {
		if !strings.Contains(setup, want) {
			t.Errorf("the crontab's setup lacks %q", want)
		}
	}
	host, _ := os.Hostname()

	s := newSandbox(t)
	runEntry := func(i int, env ...string) result {
		t.Helper()
		line := s.replace.Replace(commands[i])
		if strings.Contains(line, "contoso") {
			t.Fatalf("the sandboxed entry still names a host: %s", line)
		}
		return runShell(t, t.TempDir(), env, line)
	}
	done := runEntry(0)
	if done.code != 0 || done.stdout != "" || done.stderr != "" {
		t.Fatalf("a completed run mailed %q%q (exit %d)", done.stdout, done.stderr, done.code)
	}
	if log, _ := os.ReadFile(filepath.Join(s.log, "recovery.log")); !bytes.Contains(log, []byte(`"msg":"completed"`)) {
		t.Fatalf("the run's log:\n%s", log)
	}
	if r := runEntry(1); r.stdout != "" || r.stderr != "" {
		t.Fatalf("the hourly check of a completed recovery mailed %q%q", r.stdout, r.stderr)
	}

	// A malformed export line fails the run (exit 2) and the recovery,
	// after pages (of one activity) were delivered: a run that fails before
	// it sent anything leaves no checkpoint to be failed.
	s = newSandbox(t)
	export := filepath.Join(filepath.Dir(s.etc), "export.jsonl")
	if err := os.WriteFile(export, []byte(readExample(t, "activities.jsonl")+`{"_id":`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	failed := runEntry(0, "SIEM_RECOVERY_PAGE_SIZE=1")
	want := "siem-recovery exited 2 on " + host + ": see " + s.log + "/recovery.log and siem-recovery status --checkpoint " + s.lib + "/recovery.db\n"
	if failed.stdout != want || failed.stderr != "" {
		t.Fatalf("a failed run mailed %q%q, want %q", failed.stdout, failed.stderr, want)
	}
	if r := runEntry(1); r.stdout != "state:         failed\n" {
		t.Fatalf("the hourly check of a failed recovery mailed %q%q", r.stdout, r.stderr)
	}
}

// TestExampleLogrotate rotates a log with the example configuration, as
// logrotate does each week.
func TestExampleLogrotate(t *testing.T) {
	logrotate := requireTool(t, "logrotate")
	dir := t.TempDir()
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	group, err := user.LookupGroupId(me.Gid)
	if err != nil {
		t.Fatal(err)
	}
	conf := strings.NewReplacer("/var/log/siem-recovery/", dir+"/",
		"siem-recovery siem-recovery", me.Username+" "+group.Name).Replace(readExample(t, "logrotate/siem-recovery"))
	writeFile(t, dir, "siem-recovery.conf", conf)
	if err := os.Chmod(filepath.Join(dir, "siem-recovery.conf"), 0o644); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "recovery.log", `{"msg":"completed"}`+"\n")
	cmd := exec.Command(logrotate, "--force", "--state", filepath.Join(dir, "state"), filepath.Join(dir, "siem-recovery.conf"))
	if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
		t.Fatalf("logrotate: %v\n%s", err, out)
	}
	old, err := os.ReadFile(filepath.Join(dir, "recovery.log.1"))
	info, err2 := os.Stat(filepath.Join(dir, "recovery.log"))
	if err != nil || string(old) != `{"msg":"completed"}`+"\n" || err2 != nil || info.Size() != 0 || info.Mode().Perm() != 0o640 {
		t.Fatalf("after rotation: %q %v; new log %v %v", old, err, info, err2)
	}
}

// unitSettings returns a unit file's settings, a name appearing once per
// value, with continued lines joined.
func unitSettings(unit string) map[string][]string {
	settings := map[string][]string{}
	for _, line := range strings.Split(strings.ReplaceAll(unit, "\\\n", " "), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			settings[strings.TrimSpace(k)] = append(settings[strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	return settings
}

// TestExampleSystemdUnits checks the service and timer with systemd's own
// verifier, then what the verifier does not: the timer really starts a run
// every 15 minutes (and Persistent= applies), a run fits its slot, every
// input file reaches the dynamic user as a credential, the documentation
// the unit names is installed, and the command line parses.
func TestExampleSystemdUnits(t *testing.T) {
	analyze := requireTool(t, "systemd-analyze")
	dir := t.TempDir()
	units := map[string]string{}
	for _, name := range []string{"siem-recovery.service", "siem-recovery.timer"} {
		units[name] = strings.ReplaceAll(readExample(t, "systemd/"+name), "/usr/local/bin/siem-recovery", binary)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(units[name]), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(analyze, "verify", filepath.Join(dir, "siem-recovery.service"), filepath.Join(dir, "siem-recovery.timer"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil || out.Len() > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out.String())
	}
	service, timer := unitSettings(units["siem-recovery.service"]), unitSettings(units["siem-recovery.timer"])

	// The schedule: OnCalendar (Persistent= means nothing without it), a
	// start every 15 minutes by the clock, and a run shorter than that.
	if len(timer["OnUnitInactiveSec"]) > 0 || len(timer["OnCalendar"]) != 1 || timer["Persistent"][0] != "true" {
		t.Fatalf("timer %v: want one OnCalendar, Persistent=true, no OnUnitInactiveSec", timer)
	}
	cal, err := exec.Command(analyze, "calendar", "--iterations=4", timer["OnCalendar"][0]).Output()
	if err != nil {
		t.Fatalf("systemd-analyze calendar: %v", err)
	}
	var starts []time.Time
	for _, m := range regexp.MustCompile(`(?m)(?:Next elapse|Iter\. #\d): \w+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)`).FindAllStringSubmatch(string(cal), -1) {
		at, err := time.Parse(time.DateTime, m[1])
		if err != nil {
			t.Fatal(err)
		}
		starts = append(starts, at)
	}
	if len(starts) != 4 {
		t.Fatalf("systemd-analyze calendar:\n%s", cal)
	}
	for i := 1; i < len(starts); i++ {
		if gap := starts[i].Sub(starts[i-1]); gap != 15*time.Minute {
			t.Fatalf("the timer starts runs %v apart, want 15m:\n%s", gap, cal)
		}
	}
	execStart := strings.Fields(service["ExecStart"][0])
	if flagValue(execStart, "--settle") != "24h" {
		t.Errorf("ExecStart: --settle %q, want 24h: a day of late arrivals, then quiet", flagValue(execStart, "--settle"))
	}
	wantByCreated(t, "ExecStart", execStart)
	maxDuration, timeout := flagValue(execStart, "--max-duration"), service["TimeoutStartSec"][0]
	d, err1 := time.ParseDuration(maxDuration)
	limit, err2 := time.ParseDuration(strings.Replace(timeout, "min", "m", 1))
	if err1 != nil || err2 != nil || d+30*time.Second >= limit || limit > 15*time.Minute {
		t.Fatalf("--max-duration %s and TimeoutStartSec=%s: a run and its stop must fit the 15-minute slot", maxDuration, timeout)
	}

	// Under DynamicUser every input is a credential (in the credentials
	// directory, %d), never a path the dynamic user may not read.
	credentials := map[string]bool{}
	for _, c := range service["LoadCredential"] {
		name, _, _ := strings.Cut(c, ":")
		credentials[name] = true
	}
	inputs := []string{flagValue(execStart, "--alert"), flagValue(execStart, "--filter"), flagValue(execStart, "--ca-file")}
	for _, env := range service["Environment"] {
		if path, ok := strings.CutPrefix(env, "AZURE_CLIENT_CERTIFICATE_PATH="); ok {
			inputs = append(inputs, path)
		}
	}
	for _, path := range inputs {
		name, ok := strings.CutPrefix(path, "%d/")
		if service["DynamicUser"][0] != "yes" || !ok || !credentials[name] {
			t.Errorf("%q: under DynamicUser= an input must be a LoadCredential= credential", path)
		}
	}
	// Entra ID application: the certificate comes through LoadCredential=,
	// the rest from Environment=; no secret, no token in the unit.
	for _, want := range []string{"LoadCredential=entra.pem:", "Environment=AZURE_CLIENT_CERTIFICATE_PATH=%d/entra.pem",
		"Environment=AZURE_TENANT_ID=", "Environment=AZURE_CLIENT_ID=", "--auth entra"} {
		if !strings.Contains(units["siem-recovery.service"], want) {
			t.Errorf("the unit lacks %q", want)
		}
	}
	for _, bad := range []string{"AZURE_CLIENT_SECRET", "--token"} {
		if strings.Contains(units["siem-recovery.service"], bad) {
			t.Errorf("the unit holds %q", bad)
		}
	}

	// The documentation the unit names is what its install steps install.
	doc := strings.TrimPrefix(service["Documentation"][0], "file://")
	install := regexp.MustCompile(`install -D -m 0644 (\S+) ` + regexp.QuoteMeta(doc)).FindStringSubmatch(units["siem-recovery.service"])
	if install == nil {
		t.Fatalf("nothing in the install steps installs %s", doc)
	}
	if _, err := os.Stat(filepath.Join(repoRoot(t), install[1])); err != nil {
		t.Fatalf("the unit's documentation: %v", err)
	}

	if execStart[0] != binary {
		t.Fatalf("ExecStart: %q", execStart)
	}
	for i, a := range execStart {
		execStart[i] = strings.ReplaceAll(a, "%d", "/run/credentials/siem-recovery.service")
	}
	checkCommandLine(t, "systemd ExecStart", execStart[1:])
}

// wantByCreated checks that an example's run of the alert's window reads
// it by created, as the runbook says for an alert about the SIEM agent's
// delivery (step 1.3): by date it would send what happened in the window,
// not what the agent failed to deliver.
func wantByCreated(t *testing.T, where string, args []string) {
	t.Helper()
	runbook, err := os.ReadFile(filepath.Join(repoRoot(t), "docs/runbook.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(runbook), "the system alert about the **SIEM agent's delivery** (this runbook's case): add\n     `--by created`") {
		t.Fatal("the runbook no longer says that the agent's alert needs --by created: revisit the examples")
	}
	if flagValue(args, "--alert") != "" && flagValue(args, "--by") != "created" {
		t.Errorf("%s: --by %q for the agent's alert, want created (runbook, step 1.3)", where, flagValue(args, "--by"))
	}
}

// flagValue is the value of a flag in args, given as "--flag value" or
// "--flag=value".
func flagValue(args []string, flag string) string {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// podSpec is the part of a pod's spec the examples are checked for.
type podSpec struct {
	SecurityContext struct {
		RunAsUser int `yaml:"runAsUser"`
	} `yaml:"securityContext"`
	RestartPolicy                 string           `yaml:"restartPolicy"`
	ServiceAccountName            string           `yaml:"serviceAccountName"`
	TerminationGracePeriodSeconds int              `yaml:"terminationGracePeriodSeconds"`
	Containers                    []containerSpec  `yaml:"containers"`
	Volumes                       []map[string]any `yaml:"volumes"`
}

// containerSpec is the part of a container the examples are checked for.
type containerSpec struct {
	Image        string   `yaml:"image"`
	Args         []string `yaml:"args"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
	Env []struct {
		Name  string `yaml:"name"`
		Value string `yaml:"value"`
	} `yaml:"env"`
	Resources struct {
		Limits map[string]string `yaml:"limits"`
	} `yaml:"resources"`
}

// cronJobMemory is the memory the Kubernetes CronJob example gives a run:
// its GOMEMLIMIT (as the environment holds it) and its container's limit,
// in bytes.
func cronJobMemory(t *testing.T) (goMemLimit string, limit int64) {
	t.Helper()
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
	for _, doc := range kubernetesDocs[cronJob](t, "kubernetes/cronjob.yaml") {
		if cs := doc.Spec.JobTemplate.Spec.Template.Spec.Containers; doc.Kind == "CronJob" && len(cs) == 1 {
			soft := softMemoryLimit(t, "CronJob", cs[0])
			mib, _ := strconv.ParseInt(strings.TrimSuffix(cs[0].Resources.Limits["memory"], "Mi"), 10, 64)
			return strconv.FormatInt(soft>>20, 10) + "MiB", mib << 20
		}
	}
	t.Fatal("kubernetes/cronjob.yaml holds no CronJob of one container")
	return "", 0
}

// softMemoryLimit is the GOMEMLIMIT container c of example name sets (Go's
// soft limit on its heap), checked to leave room under the container's
// memory limit for what is not heap: at most 80 % of it. It fails the
// test when c sets none: without it the heap may grow to twice what it
// holds alive before a collection, past the limit on a busy node.
func softMemoryLimit(t *testing.T, name string, c containerSpec) int64 {
	t.Helper()
	soft := ""
	for _, e := range c.Env {
		if e.Name == "GOMEMLIMIT" {
			soft = e.Value
		}
	}
	limit, ok := strings.CutSuffix(c.Resources.Limits["memory"], "Mi")
	limitMiB, err := strconv.ParseInt(limit, 10, 64)
	if !ok || err != nil {
		t.Fatalf("%s: limits.memory %q, want a number of Mi", name, c.Resources.Limits["memory"])
	}
	v, ok := strings.CutSuffix(soft, "MiB")
	softMiB, err := strconv.ParseInt(v, 10, 64)
	if !ok || err != nil || softMiB <= 0 || softMiB*10 > limitMiB*8 {
		t.Fatalf("%s: GOMEMLIMIT %q, want a number of MiB at most 80%% of limits.memory %dMi", name, soft, limitMiB)
	}
	return softMiB << 20
}

// kubernetesDocs decodes the YAML documents of an example manifest.
func kubernetesDocs[T any](t *testing.T, name string) []T {
	t.Helper()
	dec := yaml.NewDecoder(strings.NewReader(readExample(t, name)))
	var docs []T
	for {
		var doc T
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			return docs
		} else if err != nil {
			t.Fatalf("%s does not parse: %v", name, err)
		}
		docs = append(docs, doc)
	}
}

// TestExampleKubernetesCronJob checks the CronJob: one run at a time, the
// checkpoint on the persistent volume, the token from the Secret; a planned
// stop ends the Job Complete (exit 0: no replacement pod, no failed Job)
// well before its deadline and the next slot; and the status pod reads the
// same volume with the same image.
func TestExampleKubernetesCronJob(t *testing.T) {
	type manifest struct {
		Kind     string `yaml:"kind"`
		Metadata struct {
			Name        string            `yaml:"name"`
			Namespace   string            `yaml:"namespace"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"metadata"`
		Spec struct {
			Schedule          string `yaml:"schedule"`
			ConcurrencyPolicy string `yaml:"concurrencyPolicy"`
			JobTemplate       struct {
				Spec struct {
					BackoffLimit          *int           `yaml:"backoffLimit"`
					ActiveDeadlineSeconds int            `yaml:"activeDeadlineSeconds"`
					PodFailurePolicy      map[string]any `yaml:"podFailurePolicy"`
					Template              struct {
						Metadata struct {
							Labels map[string]string `yaml:"labels"`
						} `yaml:"metadata"`
						Spec podSpec `yaml:"spec"`
					} `yaml:"template"`
				} `yaml:"spec"`
			} `yaml:"jobTemplate"`
		} `yaml:"spec"`
	}
	var job, account *manifest
	kinds := map[string]string{}
	for _, doc := range kubernetesDocs[manifest](t, "kubernetes/cronjob.yaml") {
		kinds[doc.Kind] = doc.Metadata.Name
		switch doc.Kind {
		case "CronJob":
			job = &doc
		case "ServiceAccount":
			account = &doc
		}
	}
	if job == nil || account == nil || kinds["PersistentVolumeClaim"] == "" {
		t.Fatalf("kinds %v, want a ServiceAccount, a CronJob and its PersistentVolumeClaim", kinds)
	}
	if account.Metadata.Annotations["azure.workload.identity/client-id"] == "" {
		t.Fatal("the ServiceAccount lacks the annotation azure.workload.identity/client-id")
	}
	if job.Spec.ConcurrencyPolicy != "Forbid" || job.Spec.Schedule != "*/15 * * * *" {
		t.Fatalf("CronJob: concurrencyPolicy %q, schedule %q", job.Spec.ConcurrencyPolicy, job.Spec.Schedule)
	}
	jobSpec := job.Spec.JobTemplate.Spec
	pod := jobSpec.Template.Spec
	if len(pod.Containers) != 1 || pod.RestartPolicy != "Never" {
		t.Fatalf("%d containers, restartPolicy %q", len(pod.Containers), pod.RestartPolicy)
	}
	args := pod.Containers[0].Args
	checkCommandLine(t, "CronJob args", args)
	softMemoryLimit(t, "CronJob", pod.Containers[0])
	if flagValue(args, "--settle") != "24h" {
		t.Errorf("CronJob args: --settle %q, want 24h: a day of late arrivals, then quiet", flagValue(args, "--settle"))
	}
	wantByCreated(t, "CronJob args", args)
	// The image is the Dockerfile's: its user is the pod's.
	dockerfile, err := os.ReadFile(filepath.Join(repoRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	user := fmt.Sprintf("\nUSER %d:%d\n", pod.SecurityContext.RunAsUser, pod.SecurityContext.RunAsUser)
	if !strings.Contains(string(dockerfile), user) || !strings.HasSuffix(strings.Split(pod.Containers[0].Image, ":")[0], "/siem-recovery") {
		t.Fatalf("the CronJob runs image %q as user %d; the Dockerfile's image runs as another", pod.Containers[0].Image, pod.SecurityContext.RunAsUser)
	}
	joined := strings.Join(args, " ")
	if !strings.Contains(joined, "--checkpoint=/data/") || !strings.Contains(joined, "--auth=entra") || strings.Contains(joined, "--token") {
		t.Fatalf("the CronJob must keep the checkpoint on /data and authenticate with workload identity, no token: %s", joined)
	}
	// Workload identity: the webhook acts on the label, for the annotated
	// service account.
	if jobSpec.Template.Metadata.Labels["azure.workload.identity/use"] != "true" || pod.ServiceAccountName == "" || pod.ServiceAccountName != account.Metadata.Name {
		t.Fatalf("the pod needs the label azure.workload.identity/use: \"true\" and the ServiceAccount %q (has %q)", account.Metadata.Name, pod.ServiceAccountName)
	}
	var volumes []string
	for _, v := range pod.Volumes {
		volumes = append(volumes, v["name"].(string))
		if _, ok := v["persistentVolumeClaim"]; ok && v["name"] != "data" {
			t.Fatalf("the persistent volume is %v, want it mounted on /data", v["name"])
		}
	}
	if strings.Join(volumes, ",") != "data,input" {
		t.Fatalf("volumes %v, want data and input (no Secret)", volumes)
	}

	// A planned stop exits 0, and nothing retries or replaces a pod: a
	// podFailurePolicy (Ignore starts a replacement that the deadline
	// kills) and a backoffLimit would only turn a stop into a failed Job.
	if flagValue(args, "--stopped-exit-code") != "0" || jobSpec.PodFailurePolicy != nil || jobSpec.BackoffLimit == nil || *jobSpec.BackoffLimit != 0 {
		t.Fatalf("stopped-exit-code %q, podFailurePolicy %v, backoffLimit %v: a planned stop must end the Job Complete",
			flagValue(args, "--stopped-exit-code"), jobSpec.PodFailurePolicy, jobSpec.BackoffLimit)
	}
	d, err := time.ParseDuration(flagValue(args, "--max-duration"))
	deadline := time.Duration(jobSpec.ActiveDeadlineSeconds) * time.Second
	grace := time.Duration(pod.TerminationGracePeriodSeconds) * time.Second
	if err != nil || d+grace >= deadline || deadline > 15*time.Minute || grace < 30*time.Second {
		t.Fatalf("--max-duration %v, terminationGracePeriodSeconds %v, activeDeadlineSeconds %v: a run and its stop must end before the deadline, within the slot",
			d, grace, deadline)
	}
	// The container's command line, pointed at the bundled export, stops
	// as planned with exit 0.
	s := newSandbox(t)
	local := strings.NewReplacer("/input/", s.etc+"/", "/data/", s.lib+"/").Replace(joined)
	stop := runBin(t, t.TempDir(), nil, strings.Fields(s.replace.Replace(strings.Replace(local, "--max-duration="+flagValue(args, "--max-duration"), "--max-duration=1ns", 1)))...)
	wantCode(t, stop, 0)
	wantStderr(t, stop, "Stopped before the end date: stopped at the start of the window")

	// status-pod.yaml runs status on the same volume, with the same image.
	type podManifest struct {
		Kind     string `yaml:"kind"`
		Metadata struct {
			Namespace string `yaml:"namespace"`
		} `yaml:"metadata"`
		Spec podSpec `yaml:"spec"`
	}
	pods := kubernetesDocs[podManifest](t, "kubernetes/status-pod.yaml")
	if len(pods) != 1 || pods[0].Kind != "Pod" || pods[0].Metadata.Namespace != job.Metadata.Namespace || len(pods[0].Spec.Containers) != 1 || len(pods[0].Spec.Volumes) != 1 {
		t.Fatalf("status-pod.yaml: %+v", pods)
	}
	sp := pods[0].Spec
	c := sp.Containers[0]
	claim, _ := sp.Volumes[0]["persistentVolumeClaim"].(map[string]any)
	if c.Image != pod.Containers[0].Image || claim["claimName"] != kinds["PersistentVolumeClaim"] || len(c.VolumeMounts) != 1 ||
		c.VolumeMounts[0].MountPath != "/data" || !c.VolumeMounts[0].ReadOnly || flagValue(c.Args, "--checkpoint") != flagValue(args, "--checkpoint") {
		t.Fatalf("status-pod.yaml must run status on the CronJob's checkpoint, read-only, with its image: %+v %v", c, claim)
	}
	status := runBin(t, t.TempDir(), nil, strings.Fields(strings.ReplaceAll(strings.Join(c.Args, " "), "/data/", s.lib+"/"))...)
	wantCode(t, status, 0)
	if !strings.Contains(status.stdout, "state:") || !strings.Contains(status.stdout, "percent:") {
		t.Fatalf("status in the pod:\n%s%s", status.stdout, status.stderr)
	}
}
