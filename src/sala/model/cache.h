// SequenceState: one sequence's place in a model's cache (a slot of the backend: KV, compressed keys, Lightning
// state) and its bookkeeping: tokens consumed, context limit, the active call. Not copyable (two copies would share
// one slot); movable; the slot goes back to the backend when the state is destroyed.
//
// The call: InfLLM-V2's dense/sparse switch and stage-1 visibility are decided per call (a whole prompt, or one
// decode token; sala-model.md §4.9). Model::prefill / decode open the call, run its rows in chunks and close it; the
// call lives here, so no caller can hand a chunk a call of its own.
#pragma once
#include <cstdint>
#include <memory>

namespace sala {

class Backend;

struct CallSpec {
  int64_t pos0 = 0;  // position of the call's first token
  int64_t len = 0;   // tokens in the whole call (0: no call open)
  int64_t end() const { return pos0 + len; }
};

class SequenceState {
 public:
  SequenceState() = default;
  SequenceState(std::shared_ptr<Backend> backend, int slot, int64_t max_len);
  SequenceState(SequenceState&& o) noexcept;
  SequenceState& operator=(SequenceState&& o) noexcept;
  SequenceState(const SequenceState&) = delete;
  SequenceState& operator=(const SequenceState&) = delete;
  ~SequenceState();

  int64_t pos = 0;        // tokens consumed
  int64_t max_len = 0;    // context limit (max_position_embeddings unless raised or lowered)
  bool poisoned = false;  // a call failed half-way: the cache no longer lines up with pos until reset()
  CallSpec call;          // the open call, if any

  void reset();                       // empty cache, pos 0, no call, not poisoned
  int64_t cached_tokens() const;      // tokens in the slot's KV (0 for a model without attention layers)
  bool valid() const { return slot_ >= 0; }

  // For Model: the backend and slot this state lives in.
  const Backend* backend() const { return backend_.get(); }
  int slot() const { return slot_; }

 private:
  void release() noexcept;
  std::shared_ptr<Backend> backend_;
  int slot_ = -1;
};

}  // namespace sala
