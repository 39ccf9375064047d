// A whole file mapped read-only into memory (POSIX mmap, MAP_PRIVATE). The mapping lives as
// long as the object, so pointers into data() stay valid exactly that long.
// Or borrowed bytes already in memory (the fuzz targets parse their input in place, so that
// AddressSanitizer sees a read one byte past the end).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace pyllama {

class MappedFile {
public:
    // Throws pyllama::Error naming `path` when it cannot be opened or mapped, is not a
    // regular file (a directory, a device) or is empty (nothing to map).
    explicit MappedFile(const std::string& path);
    // Borrows `size` bytes at `data`; the caller keeps them alive as long as this object.
    // Throws pyllama::Error naming `name` when size is 0, as for an empty file.
    MappedFile(const std::string& name, const uint8_t* data, uint64_t size);
    ~MappedFile();
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    const uint8_t* data() const { return data_; }
    uint64_t size() const { return size_; }

private:
    const uint8_t* data_ = nullptr;
    uint64_t size_ = 0;
    bool mapped_ = false;  // munmap in the destructor
};

// Advice for bytes [p, p + n) of a read-only file mapping that will not be read again soon: the
// whole pages inside the range leave the process's resident set (a later read maps them back in
// from the file, so nothing is lost). Best effort: failures are ignored.
void release_mapped_pages(const void* p, size_t n);

}  // namespace pyllama
