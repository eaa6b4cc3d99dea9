package cuda

import (
	"fmt"
	"strings"
	"sync"
)

// libraries are loaded once per process: dlopen hands back the same library anyway, and cuInit
// is process-wide.
var libs struct {
	once   sync.Once
	drv    *driver
	drvErr error

	rtcOnce sync.Once
	rtc     *nvrtc
	rtcErr  error

	blasOnce sync.Once
	blas     *cublas
	blasErr  error
}

func loadedDriver() (*driver, error) {
	libs.once.Do(func() {
		env := osSearchEnv()
		libs.drv, libs.drvErr = loadDriver(candidates(libCUDA, env), osDriverLoader(env))
	})
	return libs.drv, libs.drvErr
}

func loadedNVRTC() (*nvrtc, error) {
	libs.rtcOnce.Do(func() { libs.rtc, libs.rtcErr = loadNVRTC(osSearchEnv()) })
	return libs.rtc, libs.rtcErr
}

func loadedCUBLAS() (*cublas, error) {
	libs.blasOnce.Do(func() { libs.blas, libs.blasErr = loadCUBLAS(osSearchEnv()) })
	return libs.blas, libs.blasErr
}

// DeviceInfo describes one GPU.
type DeviceInfo struct {
	Ordinal       int     `json:"ordinal"`
	Name          string  `json:"name"`
	Capability    string  `json:"compute_capability"` // e.g. "9.0"
	SM            int     `json:"sm"`                 // e.g. 90
	Multiprocs    int     `json:"multiprocessors"`
	MemoryBytes   int64   `json:"memory_bytes"`
	ClockMHz      int     `json:"clock_mhz"`
	PeakBF16TFLOP float64 `json:"peak_bf16_tflops,omitempty"` // dense, from a table of known chips; 0: unknown
}

// Probe reports the driver and the GPUs without compiling anything: what `cbs doctor` prints.
type Probe struct {
	DriverPath    string       `json:"driver_path"`
	DriverVersion string       `json:"driver_version"` // CUDA version the driver supports, e.g. "13.0"
	Devices       []DeviceInfo `json:"devices"`
}

// ProbeDevices loads libcuda.so.1 and lists the GPUs. The error says what is missing.
func ProbeDevices() (*Probe, error) {
	d, err := loadedDriver()
	if err != nil {
		return nil, err
	}
	var v, n int32
	if err := d.check(d.cuDriverGetVersion(&v), "cuDriverGetVersion"); err != nil {
		return nil, err
	}
	if err := d.check(d.cuDeviceGetCount(&n), "cuDeviceGetCount"); err != nil {
		return nil, err
	}
	p := &Probe{DriverPath: d.path, DriverVersion: driverVersionString(int(v))}
	for i := 0; i < int(n); i++ {
		info, err := d.deviceInfo(i)
		if err != nil {
			return nil, err
		}
		p.Devices = append(p.Devices, info)
	}
	return p, nil
}

func driverVersionString(v int) string { return fmt.Sprintf("%d.%d", v/1000, v%1000/10) }

func (d *driver) deviceInfo(ordinal int) (DeviceInfo, error) {
	var dev cuDevice
	if err := d.check(d.cuDeviceGet(&dev, int32(ordinal)), fmt.Sprintf("cuDeviceGet(%d)", ordinal)); err != nil {
		return DeviceInfo{}, err
	}
	attr := func(a int32) int {
		var v int32
		d.cuDeviceGetAttribute(&v, a, dev)
		return int(v)
	}
	name := make([]byte, 256)
	d.cuDeviceGetName(&name[0], int32(len(name)), dev)
	var mem uintptr
	d.cuDeviceTotalMem(&mem, dev)
	ma, mi := attr(attrComputeMajor), attr(attrComputeMinor)
	info := DeviceInfo{
		Ordinal: ordinal, Name: strings.TrimRight(string(name), "\x00"),
		Capability: fmt.Sprintf("%d.%d", ma, mi), SM: ma*10 + mi,
		Multiprocs: attr(attrMultiprocessorCount), MemoryBytes: int64(mem), ClockMHz: attr(attrClockRate) / 1000,
	}
	info.PeakBF16TFLOP = peakBF16(info.Name)
	return info, nil
}

// peakBF16 is the dense bf16 tensor-core peak of known chips in TFLOP/s (vendor data sheets, SXM
// parts), for MFU; 0 when the chip is not in the table.
func peakBF16(name string) float64 {
	n := strings.ToUpper(name)
	table := []struct {
		key  string
		peak float64
	}{
		{"GB200", 2500}, {"B200", 2250}, {"H200", 989}, {"H100 PCIE", 756}, {"H100", 989}, {"H800", 989},
		{"GH200", 989}, {"A100", 312}, {"A800", 312}, {"L40S", 362}, {"A10G", 70}, {"L4", 121},
		{"RTX 4090", 165}, {"RTX 3090", 71},
	}
	for _, t := range table {
		if strings.Contains(n, t.key) {
			return t.peak
		}
	}
	return 0
}
