#include "store/postgres/pg_listener.h"

#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "base/log.h"
#include "base/thread_signals.h"
#include "store/postgres/pg_conn.h"

namespace orch {

PgListener::PgListener(std::string url, std::string channel, std::function<void()> on_notify)
    : url_(std::move(url)), channel_(std::move(channel)), on_notify_(std::move(on_notify)) {}

PgListener::~PgListener() { Stop(); }

Status PgListener::Start() {
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) return FromErrno("eventfd for the PostgreSQL listener");
  try {
    thread_ = std::thread([this] {
      BlockSignalsInThisThread();
      Main();
    });
  } catch (const std::system_error& e) {
    close(wake_fd_);
    wake_fd_ = -1;
    return Status(Code::kInternal, std::string("cannot start the listener thread: ") + e.what());
  }
  return Status::Ok();
}

void PgListener::Stop() {
  if (!thread_.joinable()) return;
  stop_ = true;
  uint64_t one = 1;
  (void)!write(wake_fd_, &one, sizeof one);
  thread_.join();
  close(wake_fd_);
  wake_fd_ = -1;
}

bool PgListener::Pause(int64_t ms) {
  pollfd p{wake_fd_, POLLIN, 0};
  while (poll(&p, 1, static_cast<int>(ms)) < 0 && errno == EINTR) {
  }
  return !stop_;
}

void PgListener::Main() {
  pthread_setname_np(pthread_self(), "orch-listen");
  int64_t backoff_ms = 250;
  while (!stop_) {
    PgConnOptions options;
    auto conn = PgConn::Connect(url_, options);
    if (conn.ok()) {
      // The channel is ours, never input: quoted all the same.
      Status listening = (*conn)->Script("LISTEN \"" + channel_ + "\"");
      if (!listening.ok()) conn = listening;
    }
    if (!conn.ok()) {
      log::Warn("cannot listen for queue changes; retrying",
                {{"error", conn.status().message()}, {"retry_in_ms", backoff_ms}});
      if (!Pause(backoff_ms)) return;
      backoff_ms = std::min<int64_t>(backoff_ms * 2, 10000);
      continue;
    }
    backoff_ms = 250;
    connected_ = true;
    PGconn* raw = (*conn)->raw();
    // Whatever was queued while no one listened.
    on_notify_();
    while (!stop_) {
      pollfd fds[2] = {{pq::PQsocket(raw), POLLIN, 0}, {wake_fd_, POLLIN, 0}};
      int n = poll(fds, 2, -1);
      if (n < 0 && errno == EINTR) continue;
      if (stop_ || n < 0) break;
      if (pq::PQconsumeInput(raw) == 0) {
        log::Warn("lost the connection that listens for queue changes; reconnecting",
                  {{"error", FromPg(raw, nullptr, "").message()}});
        break;
      }
      uint64_t got = 0;
      while (PGnotify* note = pq::PQnotifies(raw)) {
        ++got;
        pq::PQfreemem(note);
      }
      if (got > 0) {
        notifications_ += got;
        on_notify_();
      }
    }
    connected_ = false;
  }
}

}  // namespace orch
