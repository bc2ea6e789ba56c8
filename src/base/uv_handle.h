// Owner of one libuv handle (STYLE §5): the raw handle lives on the heap with
// `data` pointing back at the owner; Close() is idempotent, clears `data`
// and lets the close callback free the struct, so a callback already queued
// for this loop iteration finds data == nullptr and does nothing.
#pragma once

#include <uv.h>

#include <string>

#include "base/status.h"

namespace orch {

template <typename T>
class UvHandle {
 public:
  UvHandle() = default;
  ~UvHandle() { Close(); }
  UvHandle(const UvHandle&) = delete;
  UvHandle& operator=(const UvHandle&) = delete;

  // Allocates the handle; `init` is e.g. uv_timer_init. `owner` becomes data.
  template <typename InitFn, typename... Args>
  int Init(InitFn init, uv_loop_t* loop, void* owner, Args... args) {
    Close();
    h_ = new T();
    int rc = init(loop, h_, args...);
    if (rc != 0) {
      delete h_;
      h_ = nullptr;
      return rc;
    }
    h_->data = owner;
    return 0;
  }

  void Close() {
    if (h_ == nullptr) return;
    h_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(h_), [](uv_handle_t* h) { delete reinterpret_cast<T*>(h); });
    h_ = nullptr;
  }

  // Lets the loop exit while only this handle is active.
  void Unref() {
    if (h_ != nullptr) uv_unref(reinterpret_cast<uv_handle_t*>(h_));
  }

  T* get() const { return h_; }
  explicit operator bool() const { return h_ != nullptr; }

 private:
  T* h_ = nullptr;
};

// "uv_listen: address already in use" style status for a libuv error code.
Status FromUv(const std::string& what, int rc);

}  // namespace orch
