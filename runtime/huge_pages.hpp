// Large host buffers on transparent huge pages. A buffer's first touch costs one page fault per
// 4 KiB page; MNIST's 47 MB of training images are ~11,500 of them, and on a virtual machine (this
// project's development VMs, the lent GPU machines' microVMs) each fault costs more than copying
// its page. With Linux's transparent huge pages in their "madvise" mode (the usual default), an
// advised range is backed by 2 MiB pages on first touch: ~24 faults for the same buffer.
#pragma once

#include <cstddef>
#include <vector>

namespace mnist {

// Asks for huge pages over the 2 MiB-aligned part of [p, p + bytes). A refusal (no THP, another
// OS, a range too small) changes nothing but the speed.
void advise_huge_pages(void* p, std::size_t bytes);

// v.reserve(n), the new storage advised as above BEFORE anything touches it (a resize or assign
// that follows then faults it in by huge pages). Below 4 MiB it is a plain reserve.
template <class T>
void reserve_huge(std::vector<T>& v, std::size_t n) {
  if (n <= v.capacity()) return;
  v.reserve(n);
  if (n * sizeof(T) >= (std::size_t(4) << 20)) advise_huge_pages(v.data(), v.capacity() * sizeof(T));
}

}  // namespace mnist
