package main

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"

	"github.com/ebitengine/purego"
	"github.com/spf13/cobra"

	"cbs/compute/blas"
	"cbs/compute/cpu"
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
	GoRoot  string    `json:"goroot_corpus"`
	GPU     string    `json:"gpu"`
}

func newDoctorCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Report the backend, BLAS library, threads and GPU availability",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			be := cpu.New(0)
			r := doctorReport{
				Version: codeVersion(), Go: runtime.Version(), CPU: blas.CPUInfo(), Cores: runtime.NumCPU(),
				Backend: be.Name(), BLAS: be.BLAS(), GPU: gpuStatus(),
			}
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
			fmt.Fprintf(out, "corpus:  goroot at %s\n", r.GoRoot)
			fmt.Fprintf(out, "gpu:     %s\n", r.GPU)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// gpuStatus says whether an NVIDIA driver is present. Training on it needs the CUDA backend,
// which this build does not include; the line says so rather than pretending.
func gpuStatus() string {
	h, err := purego.Dlopen("libcuda.so.1", purego.RTLD_LAZY|purego.RTLD_LOCAL)
	if err != nil {
		if _, serr := os.Stat("/dev/nvidiactl"); serr == nil {
			return "NVIDIA device nodes present but libcuda.so.1 does not load: " + err.Error()
		}
		return "none: libcuda.so.1 (the NVIDIA driver) not found; training runs on the CPU"
	}
	defer purego.Dlclose(h)
	return "NVIDIA driver found (libcuda.so.1), but this build has no CUDA backend; training runs on the CPU"
}
