package figure

// Exported for tests only.
type (
	Log2Ticks  = log2Ticks
	Log10Ticks = log10Ticks
)
