package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// The deployment examples under docs/examples are checked here: each is
// valid for its tool, and the siem-recovery command line in it parses
// (the run gets as far as reading the alert file, which does not exist on
// this machine).

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

func TestExampleCrontab(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "docs/examples/crontab"))
	if err != nil {
		t.Fatal(err)
	}
	schedule := regexp.MustCompile(`^(\S+\s+){5}`)
	entries := 0
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") || regexp.MustCompile(`^[A-Z_]+=`).MatchString(line) {
			continue
		}
		if !schedule.MatchString(line) {
			t.Fatalf("not a crontab entry: %q", line)
		}
		fields := strings.Fields(schedule.ReplaceAllString(line, ""))
		var args []string
		for _, f := range fields[1:] { // after the binary, up to the redirections
			if strings.HasPrefix(f, ">") || strings.HasPrefix(f, "2>") {
				break
			}
			args = append(args, f)
		}
		checkCommandLine(t, "crontab", args)
		entries++
	}
	if entries != 1 {
		t.Fatalf("%d crontab entries, want 1", entries)
	}
}

func TestExampleSystemdUnits(t *testing.T) {
	analyze := requireTool(t, "systemd-analyze")
	dir := t.TempDir()
	src := filepath.Join(repoRoot(t), "docs/examples/systemd")
	var execStart []string
	for _, name := range []string{"siem-recovery.service", "siem-recovery.timer"} {
		data, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		unit := strings.ReplaceAll(string(data), "/usr/local/bin/siem-recovery", binary)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(unit), 0o644); err != nil {
			t.Fatal(err)
		}
		if m := regexp.MustCompile(`(?s)ExecStart=(.*?[^\\])\n`).FindStringSubmatch(unit); m != nil {
			execStart = strings.Fields(strings.ReplaceAll(m[1], "\\\n", " "))
		}
	}
	cmd := exec.Command(analyze, "verify", filepath.Join(dir, "siem-recovery.service"), filepath.Join(dir, "siem-recovery.timer"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil || out.Len() > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out.String())
	}
	if len(execStart) < 2 || execStart[0] != binary {
		t.Fatalf("ExecStart: %q", execStart)
	}
	checkCommandLine(t, "systemd ExecStart", execStart[1:])
	// Entra ID application: the certificate comes through LoadCredential=,
	// the rest from Environment=; no secret, no token in the unit.
	unit, _ := os.ReadFile(filepath.Join(src, "siem-recovery.service"))
	for _, want := range []string{"LoadCredential=entra.pem:", "Environment=AZURE_CLIENT_CERTIFICATE_PATH=%d/entra.pem",
		"Environment=AZURE_TENANT_ID=", "Environment=AZURE_CLIENT_ID=", "--auth entra"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("the unit lacks %q", want)
		}
	}
	for _, bad := range []string{"AZURE_CLIENT_SECRET", "--token"} {
		if strings.Contains(string(unit), bad) {
			t.Errorf("the unit holds %q", bad)
		}
	}
}

func TestExampleKubernetesCronJob(t *testing.T) {
	f, err := os.Open(filepath.Join(repoRoot(t), "docs/examples/kubernetes/cronjob.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	kinds := map[string]bool{}
	serviceAccount := "" // the ServiceAccount precedes the CronJob
	for {
		var doc struct {
			Kind     string `yaml:"kind"`
			Metadata struct {
				Name        string            `yaml:"name"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"metadata"`
			Spec struct {
				Schedule          string `yaml:"schedule"`
				ConcurrencyPolicy string `yaml:"concurrencyPolicy"`
				JobTemplate       struct {
					Spec struct {
						Template struct {
							Metadata struct {
								Labels map[string]string `yaml:"labels"`
							} `yaml:"metadata"`
							Spec struct {
								ServiceAccountName string `yaml:"serviceAccountName"`
								Containers         []struct {
									Args         []string `yaml:"args"`
									VolumeMounts []struct {
										Name      string `yaml:"name"`
										MountPath string `yaml:"mountPath"`
									} `yaml:"volumeMounts"`
								} `yaml:"containers"`
								Volumes []map[string]any `yaml:"volumes"`
							} `yaml:"spec"`
						} `yaml:"template"`
					} `yaml:"spec"`
				} `yaml:"jobTemplate"`
			} `yaml:"spec"`
		}
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("cronjob.yaml does not parse: %v", err)
		}
		kinds[doc.Kind] = true
		if doc.Kind == "ServiceAccount" {
			serviceAccount = doc.Metadata.Name
			if doc.Metadata.Annotations["azure.workload.identity/client-id"] == "" {
				t.Fatal("the ServiceAccount lacks the annotation azure.workload.identity/client-id")
			}
		}
		if doc.Kind != "CronJob" {
			continue
		}
		if doc.Spec.ConcurrencyPolicy != "Forbid" || len(strings.Fields(doc.Spec.Schedule)) != 5 {
			t.Fatalf("CronJob: concurrencyPolicy %q, schedule %q", doc.Spec.ConcurrencyPolicy, doc.Spec.Schedule)
		}
		pod := doc.Spec.JobTemplate.Spec.Template.Spec
		if len(pod.Containers) != 1 {
			t.Fatalf("%d containers", len(pod.Containers))
		}
		args := pod.Containers[0].Args
		checkCommandLine(t, "CronJob args", args)
		joined := strings.Join(args, " ")
		if !strings.Contains(joined, "--checkpoint=/data/") || !strings.Contains(joined, "--auth=entra") || strings.Contains(joined, "--token") {
			t.Fatalf("the CronJob must keep the checkpoint on /data and authenticate with workload identity, no token: %s", joined)
		}
		// Workload identity: the webhook acts on the label, for the
		// annotated service account.
		if doc.Spec.JobTemplate.Spec.Template.Metadata.Labels["azure.workload.identity/use"] != "true" || pod.ServiceAccountName == "" || pod.ServiceAccountName != serviceAccount {
			t.Fatalf("the pod needs the label azure.workload.identity/use: \"true\" and the ServiceAccount %q (has %q)", serviceAccount, pod.ServiceAccountName)
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
	}
	if !kinds["CronJob"] || !kinds["PersistentVolumeClaim"] || !kinds["ServiceAccount"] {
		t.Fatalf("kinds %v, want a ServiceAccount, a CronJob and its PersistentVolumeClaim", kinds)
	}
}
