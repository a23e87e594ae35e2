// The embedded bitmap font of the plots: printable ASCII (32..126) in a 5x9 cell (7 rows of cap
// height, 2 rows of descender), one bit per pixel. Drawn with a 1-pixel gap between glyphs and
// 2 between lines, so at scale s a glyph advances 6*s pixels and a line takes 11*s.
#pragma once

#include <cstdint>

namespace mnist::font {

constexpr int kGlyphW = 5, kGlyphH = 9, kAdvance = 6, kLineH = 11, kCapH = 7;

// Row r (0 = top) of `c`'s glyph: bit (kGlyphW - 1 - x) set when pixel x is ink. Characters
// outside 32..126 are drawn as '?'. Precondition: 0 <= r < kGlyphH.
uint8_t glyph_row(char c, int r);

}  // namespace mnist::font
