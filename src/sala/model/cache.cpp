#include "sala/model/cache.h"

#include <utility>

#include "sala/backend/backend.h"

namespace sala {

SequenceState::SequenceState(std::shared_ptr<Backend> backend, int slot, int64_t max_len_)
    : max_len(max_len_), backend_(std::move(backend)), slot_(slot) {}

SequenceState::SequenceState(SequenceState&& o) noexcept
    : pos(o.pos), max_len(o.max_len), poisoned(o.poisoned), call(o.call), backend_(std::move(o.backend_)),
      slot_(std::exchange(o.slot_, -1)) {}

SequenceState& SequenceState::operator=(SequenceState&& o) noexcept {
  if (this != &o) {
    release();
    pos = o.pos;
    max_len = o.max_len;
    poisoned = o.poisoned;
    call = o.call;
    backend_ = std::move(o.backend_);
    slot_ = std::exchange(o.slot_, -1);
  }
  return *this;
}

SequenceState::~SequenceState() { release(); }

void SequenceState::release() noexcept {
  if (backend_ && slot_ >= 0) backend_->release_slot(slot_);
  slot_ = -1;
}

void SequenceState::reset() {
  pos = 0;
  poisoned = false;
  call = {};
  if (backend_ && slot_ >= 0) backend_->reset_slot(slot_);
}

int64_t SequenceState::cached_tokens() const {
  return backend_ && slot_ >= 0 ? backend_->cached_tokens(slot_) : 0;
}

}  // namespace sala
