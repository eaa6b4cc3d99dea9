package figure

// Exported for tests only.
type (
	TokenTicks = tokenTicks
	CountTicks = countTicks
)
