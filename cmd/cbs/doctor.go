package main

import (
	"encoding/json"
	"fmt"
	"runtime"
	"strings"

	"github.com/spf13/cobra"

	"cbs/compute/blas"
	"cbs/compute/cpu"
	"cbs/compute/device"
	"cbs/data"
)

func init() { verbs = append(verbs, newDoctorCmd) }

type doctorReport struct {
	Version string    `json:"version"`
	Go      string    `json:"go"`
	CPU     string    `json:"cpu"`
	Cores   int       `json:"cores"`
	Backend string    `json:"backend"`
	BLAS    blas.Info `json:"blas"`
	// DNNL is oneDNN, which runs the CPU's bf16 matrix products (--precision bf16).
	DNNL blas.DNNLInfo `json:"onednn"`
	// AMX says whether the bf16 products may run on AMX tiles, and if not, why.
	AMX    string `json:"amx"`
	GoRoot string `json:"goroot_corpus"`
	GPU    string `json:"gpu"`
}

func newDoctorCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Report the backend, BLAS and oneDNN libraries, threads and GPU availability",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			be := cpu.New(0)
			r := doctorReport{
				Version: codeVersion(), Go: runtime.Version(), CPU: blas.CPUInfo(), Cores: runtime.NumCPU(),
				Backend: be.Name(), BLAS: be.BLAS(), GPU: gpuStatus(),
			}
			_, r.DNNL = blas.DefaultDNNL()
			r.AMX = cpu.AMXStatus()
			if root, err := data.GoRoot(); err == nil {
				r.GoRoot = root + "/src"
			} else {
				r.GoRoot = "unavailable: " + err.Error()
			}
			out := cmd.OutOrStdout()
			if asJSON {
				b, _ := json.MarshalIndent(r, "", "  ")
				fmt.Fprintln(out, string(b))
				return nil
			}
			fmt.Fprintf(out, "cbs %s (%s)\n", r.Version, r.Go)
			fmt.Fprintf(out, "cpu:     %s, %d cores\n", r.CPU, r.Cores)
			fmt.Fprintf(out, "backend: %s\n", r.Backend)
			if r.BLAS.FallbackReason != "" {
				fmt.Fprintf(out, "blas:    gonum (pure Go): %s\n", r.BLAS.FallbackReason)
			} else {
				fmt.Fprintf(out, "blas:    %s %s, core %s\n", r.BLAS.Library, r.BLAS.Path, r.BLAS.CoreName)
			}
			if r.DNNL.Library != "" {
				d := r.DNNL
				fmt.Fprintf(out, "onednn:  %s %s, isa %s, %s runtime, %d thread(s) per call: bf16 products available (--precision bf16)\n",
					d.Version, d.Path, d.ISA, d.Runtime, d.Threads)
			} else {
				fmt.Fprintf(out, "onednn:  unavailable, no bf16 products on the cpu (Debian: apt-get install libdnnl2): %s\n", r.DNNL.Unavailable)
			}
			fmt.Fprintf(out, "amx:     %s\n", r.AMX)
			fmt.Fprintf(out, "corpus:  goroot at %s\n", r.GoRoot)
			fmt.Fprintf(out, "gpu:     %s\n", r.GPU)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// gpuStatus lists the NVIDIA driver and GPUs, or says why there are none.
func gpuStatus() string {
	p, err := device.ProbeGPUs()
	if err != nil {
		return "none (training runs on the CPU): " + err.Error()
	}
	if len(p.Devices) == 0 {
		return fmt.Sprintf("driver %s (CUDA %s) but no GPU", p.DriverPath, p.DriverVersion)
	}
	var parts []string
	for i, d := range p.Devices {
		parts = append(parts, fmt.Sprintf("cuda:%d %s (sm_%d, %.0f GiB)", i, d.Name, d.SM, float64(d.MemoryBytes)/(1<<30)))
	}
	return fmt.Sprintf("driver %s (CUDA %s): %s; use run.device = \"cuda\" or --device", p.DriverPath, p.DriverVersion, strings.Join(parts, ", "))
}
