package commands

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/ds01/ds01-gateway/session/gpu"
)

type gpuJSON struct {
	UUID      string  `json:"uuid"`
	Index     string  `json:"index"`
	Name      string  `json:"name"`
	MemoryMiB uint64  `json:"memory_mib"`
	GPUEq     float64 `json:"gpueq"`
}

func toGPUsJSON(slots []gpu.Slot) []gpuJSON {
	out := make([]gpuJSON, 0, len(slots))
	for _, s := range slots {
		out = append(out, gpuJSON{UUID: s.UUID, Index: s.Index, Name: s.Name, MemoryMiB: s.MemoryMiB, GPUEq: round2(s.GPUEq())})
	}
	return out
}

func round2(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }

func projectSet() *command {
	return &command{
		name: "project-set", args: "<project>", minArgs: 1, maxArgs: 1,
		summary: "Set a project's defaults: --gpus N (a login can still ask for P+gpus=N or P+cpu).",
		flags:   []flagSpec{{name: "--gpus", kind: valueFlag, arg: "N|default", help: "GPUs a login gets unless its name says otherwise"}},
		run: func(ctx context.Context, env *Env, p *parsed) error {
			v := p.value("--gpus")
			if v == "" {
				return usagef("nothing to set: give --gpus N")
			}
			n := -1
			if v != "default" {
				var err error
				if n, err = strconv.Atoi(v); err != nil || n < 0 || n > 64 {
					return usagef("--gpus: want a number from 0 to 64 or default, got %q", v)
				}
			}
			if err := env.Service.SetProjectGPUs(ctx, env.User, p.args[0], n); err != nil {
				return err
			}
			env.notef("%s: logins get %s GPU(s) from the next launch", p.args[0], v)
			return nil
		},
	}
}

func gpuStatus() *command {
	return &command{
		name: "gpu-status", aliases: []string{"gpus", "gpu-queue"}, flags: []flagSpec{formatFlag},
		summary: "Show every GPU slot, who holds it since when, and the queue.",
		run: func(ctx context.Context, env *Env, p *parsed) error {
			slots, queue := env.Service.GPUStatus()
			held := map[string]gpu.HoldState{}
			for _, h := range env.Service.Holds() {
				held[h.Slot.UUID] = h
			}
			// Admins also see which container holds each slot.
			holder := map[string]string{}
			if env.Admin {
				cs, err := env.Service.AllContainers(ctx, false)
				if err != nil {
					return err
				}
				for _, c := range cs {
					for _, s := range c.GPUs {
						holder[s.UUID] = c.Name
					}
				}
			}
			if isJSON(p) {
				type slotJSON struct {
					gpuJSON
					User        *string    `json:"user"`
					Project     *string    `json:"project"`
					Since       *time.Time `json:"since"`
					Utilization *int       `json:"utilization_pct"`
					// A free slot kept for the owner of a container
					// that stopped (gpu_hold_after_stop).
					HeldFor   *string    `json:"held_for"`
					HeldUntil *time.Time `json:"held_until"`
					// Only in an admin's view.
					Container string `json:"container,omitempty"`
				}
				type waiterJSON struct {
					Position int       `json:"position"`
					User     string    `json:"user"`
					Project  string    `json:"project"`
					Slots    int       `json:"slots"`
					Since    time.Time `json:"since"`
					WaitingS float64   `json:"waiting_s"`
				}
				out := struct {
					Slots []slotJSON   `json:"slots"`
					Queue []waiterJSON `json:"queue"`
				}{Slots: []slotJSON{}, Queue: []waiterJSON{}}
				for _, s := range slots {
					j := slotJSON{gpuJSON: toGPUsJSON([]gpu.Slot{s.Slot})[0], Container: holder[s.Slot.UUID]}
					if s.Holder != nil {
						h := *s.Holder
						j.User, j.Project, j.Since = &h.User, &h.Project, &h.Since
					}
					if u, ok := env.Service.GPUUtilization(s.Slot.UUID); ok {
						j.Utilization = &u
					}
					if h, ok := held[s.Slot.UUID]; ok && s.Holder == nil {
						who := h.User + "/" + h.Project
						j.HeldFor, j.HeldUntil = &who, &h.Until
					}
					out.Slots = append(out.Slots, j)
				}
				for i, w := range queue {
					out.Queue = append(out.Queue, waiterJSON{i + 1, w.User, w.Project, w.Slots, w.Since, round1(time.Since(w.Since).Seconds())})
				}
				return writeJSON(env.Stdout, out)
			}
			if len(slots) == 0 {
				env.notef("this host has no GPUs")
				return nil
			}
			tw := table(env.Stdout)
			head := "GPU\tMODEL\tMEMORY\tGPUEQ\tUTIL\tHOLDER\tSINCE"
			if env.Admin {
				head += "\tCONTAINER"
			}
			fmt.Fprintln(tw, head)
			for _, s := range slots {
				who, since := "free", "-"
				if h := s.Holder; h != nil {
					who, since = h.User+"/"+h.Project, when(h.Since)
				} else if h, ok := held[s.Slot.UUID]; ok {
					who = fmt.Sprintf("free, held for %s/%s until %s", h.User, h.Project, h.Until.Local().Format("15:04"))
				}
				util := "-"
				if u, ok := env.Service.GPUUtilization(s.Slot.UUID); ok {
					util = fmt.Sprintf("%d%%", u)
				}
				fmt.Fprintf(tw, "%s\t%s\t%d GiB\t%.2f\t%s\t%s\t%s", s.Slot.Index, s.Slot.Name, (s.Slot.MemoryMiB+512)/1024, s.Slot.GPUEq(), util, who, since)
				if env.Admin {
					fmt.Fprintf(tw, "\t%s", orDash(holder[s.Slot.UUID]))
				}
				fmt.Fprintln(tw)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if len(queue) == 0 {
				fmt.Fprintln(env.Stdout, "\nqueue: empty")
				return nil
			}
			fmt.Fprintln(env.Stdout, "\nqueue:")
			for i, w := range queue {
				fmt.Fprintf(env.Stdout, "  %d. %s/%s wants %d GPU(s), waiting %s\n", i+1, w.User, w.Project, w.Slots, time.Since(w.Since).Round(time.Second))
			}
			return nil
		},
	}
}

func checkLimits() *command {
	return &command{
		name: "check-limits", aliases: []string{"limits"}, flags: []flagSpec{formatFlag},
		summary: "Show your limits and what you use now.",
		run: func(ctx context.Context, env *Env, p *parsed) error {
			l := env.Service.UserLimits(ctx, env.User)
			if isJSON(p) {
				return writeJSON(env.Stdout, struct {
					User       string         `json:"user"`
					Group      string         `json:"group"`
					Limits     map[string]any `json:"limits"`
					GPUEq      float64        `json:"gpueq_in_use"`
					Slots      int            `json:"gpu_slots_in_use"`
					Containers int            `json:"containers"`
				}{env.User.Name, l.Group, limitsJSON(l.Limits), round2(l.GPUEq), l.Slots, l.Containers})
			}
			group := l.Group
			if group == "" {
				group = "(defaults)"
			}
			fmt.Fprintf(env.Stdout, "user: %s, group: %s\n", env.User.Name, group)
			for _, line := range l.Limits.Describe() {
				fmt.Fprintln(env.Stdout, "  "+line)
			}
			maxEq, maxC := "unlimited", "unlimited"
			if l.Limits.MaxGPUEq != nil {
				maxEq = gpu.FormatEq(*l.Limits.MaxGPUEq)
			}
			if l.Limits.MaxContainers != nil {
				maxC = strconv.Itoa(*l.Limits.MaxContainers)
			}
			fmt.Fprintf(env.Stdout, "in use: %s of %s GPU-equivalents (%d slot(s)), %d of %s containers\n", gpu.FormatEq(l.GPUEq), maxEq, l.Slots, l.Containers, maxC)
			if l.Limits.MaxGPUEq != nil && *l.Limits.MaxGPUEq > 0 && l.GPUEq >= 0.8**l.Limits.MaxGPUEq {
				env.notef("you use %d%% of your GPU quota", int(100*l.GPUEq / *l.Limits.MaxGPUEq))
			}
			return nil
		},
	}
}

// limitsJSON names the limits with DS01's keys; null means unlimited.
func limitsJSON(l gpu.Limits) map[string]any {
	val := func(p any) any {
		switch v := p.(type) {
		case *float64:
			if v != nil {
				return *v
			}
		case *int:
			if v != nil {
				return *v
			}
		case *int64:
			if v != nil {
				return *v
			}
		}
		return nil
	}
	out := map[string]any{
		"max_gpu_equivalents":         val(l.MaxGPUEq),
		"max_gpu_slots_per_container": val(l.MaxSlotsPerContainer),
		"max_containers_per_user":     val(l.MaxContainers),
		"max_cpus":                    val(l.MaxCPUs),
		"memory":                      val(l.Memory),
		"shm_size":                    val(l.ShmSize),
		"pids_limit":                  val(l.PidsLimit),
	}
	// The lifecycle keys appear only where the limits file sets them (the
	// gateway's lifecycle block applies otherwise); null means never.
	hours := func(key string, o gpu.Opt[time.Duration]) {
		if o.Set {
			out[key] = nil
			if !o.Never {
				out[key] = o.V.Hours()
			}
		}
	}
	pct := func(key string, o gpu.Opt[float64]) {
		if o.Set {
			out[key] = nil
			if !o.Never {
				out[key] = o.V
			}
		}
	}
	hours("idle_timeout_h", l.IdleTimeout)
	hours("max_runtime_h", l.MaxRuntime)
	hours("gpu_hold_after_stop_h", l.GPUHoldAfterStop)
	pct("gpu_idle_threshold", l.GPUIdleThreshold)
	pct("cpu_idle_threshold", l.CPUIdleThreshold)
	return out
}
