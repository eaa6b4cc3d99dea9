// Package cuda is the NVIDIA GPU backend: compute.Backend[float32] on device memory.
//
// Everything is loaded at run time with purego, so the package builds with CGO_ENABLED=0 and its
// tests pass (skipping the GPU ones) on machines without a GPU: the driver API from
// libcuda.so.1 (primary context, versioned _v2 symbols, one stream), NVRTC to compile the CUDA C
// kernels embedded in the binary for the detected architecture (the compiled module is cached on
// disk, keyed by source hash, architecture, NVRTC and driver versions), and cuBLAS for the
// matrix products (GemmEx and strided batched GemmEx; bf16 inputs with fp32 accumulation by
// default, tf32 or fp32 selectable).
//
// Buffers: every float slice passed to the Backend's methods must be a device view, a slice
// returned by Alloc (or a sub-slice of one). Its data pointer is a device address, so Go code
// must never read or write its elements; Upload, Download, Copy and Zero move data. Integer
// slices (token ids, targets) are host memory and are uploaded by the op. Using a host float
// slice where a device one is expected panics with a message naming the op.
//
// Determinism: no kernel adds floats with atomics. Column sums (RMSNorm weight gradients), the
// embedding gradient, the cross-entropy total and the sum of squares reduce in a fixed order, so
// a step is bit-identical from run to run on the same GPU model, driver and cuBLAS version
// (cuBLAS guarantees bitwise reproducibility only for the same architecture and SM count).
package cuda
