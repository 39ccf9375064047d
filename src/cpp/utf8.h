// UTF-8 validation, as strict as Python's decoder: no overlong forms, no surrogates, nothing
// above U+10FFFF. Used where a string from a file must become a Python str.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace pyllama {

inline bool is_valid_utf8(std::string_view s) {
    size_t i = 0;
    while (i < s.size()) {
        const unsigned char lead = static_cast<unsigned char>(s[i]);
        if (lead < 0x80) {
            ++i;
            continue;
        }
        size_t len;
        uint32_t cp;
        if (lead >= 0xC2 && lead <= 0xDF) {
            len = 2, cp = lead & 0x1F;
        } else if (lead >= 0xE0 && lead <= 0xEF) {
            len = 3, cp = lead & 0x0F;
        } else if (lead >= 0xF0 && lead <= 0xF4) {
            len = 4, cp = lead & 0x07;
        } else {
            return false;  // a continuation byte, an overlong 2-byte lead (C0, C1) or F5..FF
        }
        if (len > s.size() - i) return false;
        for (size_t k = 1; k < len; ++k) {
            const unsigned char cont = static_cast<unsigned char>(s[i + k]);
            if ((cont & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (cont & 0x3F);
        }
        if (len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) return false;
        if (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) return false;
        i += len;
    }
    return true;
}

}  // namespace pyllama
