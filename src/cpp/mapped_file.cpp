#include "mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "error.h"

namespace pyllama {

namespace {

[[noreturn]] void fail(const std::string& path, const char* what, int err) {
    throw Error(path + ": " + what + ": " + std::strerror(err));
}

// Closes the descriptor on every path out of the constructor; the mapping outlives it.
struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
};

}  // namespace

MappedFile::MappedFile(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail(path, "cannot open", errno);
    FdCloser closer{fd};

    struct stat st;
    if (::fstat(fd, &st) != 0) fail(path, "cannot stat", errno);
    if (S_ISDIR(st.st_mode)) fail(path, "cannot read", EISDIR);
    if (!S_ISREG(st.st_mode)) throw Error(path + ": not a regular file");
    if (st.st_size <= 0) throw Error(path + ": file is empty");

    size_ = static_cast<uint64_t>(st.st_size);
    void* p = ::mmap(nullptr, static_cast<size_t>(size_), PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) fail(path, "cannot mmap", errno);
    data_ = static_cast<const uint8_t*>(p);
    mapped_ = true;
}

MappedFile::MappedFile(const std::string& name, const uint8_t* data, uint64_t size)
    : data_(data), size_(size) {
    if (size == 0) throw Error(name + ": file is empty");
}

MappedFile::~MappedFile() {
    if (mapped_) ::munmap(const_cast<uint8_t*>(data_), static_cast<size_t>(size_));
}

void release_mapped_pages(const void* p, size_t n) {
    const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
    const auto begin = (reinterpret_cast<uintptr_t>(p) + page - 1) / page * page;
    const auto end = (reinterpret_cast<uintptr_t>(p) + n) / page * page;
    if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

}  // namespace pyllama
