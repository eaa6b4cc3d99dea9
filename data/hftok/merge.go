package hftok

// longPiece is the longest piece whose ids are cached: a longer one is rare and costly to keep.
const longPiece = 256
