// edgec_stage.h: one rank's stage — its TVM module, its double-buffered tensors, the frame loop.
//
// Why persistent requests and synchronous sends: the same as edgec/runtime/pipeline.py, so the C++
// program and the Python runtime behave alike (a fast stage runs at most two frames ahead, and a
// message can only match the buffer set of its own frame parity).
//
// Replicated stages (`replicate`): replica a of r runs the global frames a, a + r, ...; its buffer set
// is the local index j % 2, a link carries frame f only if f % every == offset, and a send's tag
// parity is the consumer's local parity (f / peer_replicas) % 2 — pipeline.py's rules, so a C++ rank
// and a Python rank agree on every tag. Without replicas: every link, every frame, parity f % 2.
#pragma once

#include <deque>
#include <optional>
#include <sys/stat.h>
#include <unistd.h>

namespace edgec {

struct Slot {
  std::string name;
  DLDataType dtype;
  std::vector<int64_t> shape;
  ffi::Tensor buf[2];
  int feed = -1, keep = -1;
  ffi::Tensor stack, kept;
  size_t bytes() const { return nbytes(dtype, shape); }
};

// A link carries the frames f with f % every == offset; its sends are tagged with the consumer's local
// parity (f / peer_replicas) % 2 (without replicas: every frame, parity f % 2).
struct Link {
  Slot* slot;
  int peer, tag, every = 1, offset = 0, peer_replicas = 1;
  bool carries(int f) const { return f % every == offset; }
};

class Stage {
 public:
  Stage(Context& ctx, const StageInfo& info, int tag_stride) : ctx_(ctx), tag_stride_(tag_stride) {
    std::string path = ctx.root + "/" + info.module;
    struct stat st;
    if (stat(path.c_str(), &st) != 0) ctx.fail("stage module '" + path + "' is missing");
    setenv("TVM_NUM_THREADS", std::to_string(std::max(info.threads, 1)).c_str(), 0);
    try {
      ffi::Module lib = ffi::Module::LoadFromFile(path);
      vm_ = lib->GetFunction("vm_load_executable").value()().cast<ffi::Module>();
      (*vm_)->GetFunction("vm_initialization").value()(static_cast<int>(kDLCPU), 0, 2);
      main_ = (*vm_)->GetFunction("main").value();
    } catch (const std::exception& e) {
      ctx.fail("cannot load stage module '" + path + "': " + e.what());
    }
  }

  Slot& param(const char* name, DLDataType dtype, std::vector<int64_t> shape) { return add(params_, name, dtype, shape); }
  Slot& result(const char* name, DLDataType dtype, std::vector<int64_t> shape) { return add(results_, name, dtype, shape); }
  void recv(Slot& slot, int from, int tag) { recvs_.push_back({&slot, from, tag}); }
  void send(Slot& slot, int to, int tag) { sends_.push_back({&slot, to, tag}); }
  // With replicated stages: this rank's links from ctx.links, matched to its tensors by name.
  void connect() {
    for (const LinkInfo& l : ctx_.links) {
      if (l.rank != ctx_.rank) continue;
      Slot* slot = find(params_, l.tensor);
      if (!slot && l.send) slot = find(results_, l.tensor);
      if (!slot) ctx_.fail(std::string("link of tensor '") + l.tensor + "' names no tensor of this stage");
      (l.send ? sends_ : recvs_).push_back({slot, l.peer, l.tag, l.every, l.offset, l.peer_replicas});
    }
  }
  void feed(Slot& slot, int input) {
    slot.feed = input;
    slot.stack = read_npy(ctx_, ctx_.rundir + "/input" + std::to_string(input) + ".npy", slot.dtype, slot.shape);
  }
  void keep(Slot& slot, int output) {
    slot.keep = output;
    if (!ctx_.keep_outputs) return;
    std::vector<int64_t> shape{ctx_.local_measured(ctx_.rank)};
    shape.insert(shape.end(), slot.shape.begin(), slot.shape.end());
    slot.kept = empty(slot.dtype, shape);
  }

  // Rows of (before input wait, inputs in, sends free, compute done, sends posted), one per local frame.
  // Local frame j is global frame replica + j * replicas (j = f without replicas); buffer set j % 2.
  std::vector<double> run() {
    int count = ctx_.local_count(ctx_.rank), skipped = count - ctx_.local_measured(ctx_.rank);
    auto global = [&](int j) { return ctx_.replica + j * ctx_.replicas; };
    std::vector<MPI_Request> rreq[2], sreq[2][2];  // sreq[own buffer set][tag parity]
    for (int p = 0; p < 2; ++p) {
      for (const Link& l : recvs_) {
        rreq[p].emplace_back();
        ctx_.check(MPI_Recv_init(l.slot->buf[p].data_ptr(), static_cast<int>(l.slot->bytes()), MPI_BYTE, l.peer,
                                 l.tag + p * tag_stride_, MPI_COMM_WORLD, &rreq[p].back()), "posting receive of " + l.slot->name);
      }
      for (int q = 0; q < 2; ++q)
        for (const Link& l : sends_) {
          sreq[p][q].emplace_back();
          ctx_.check(MPI_Ssend_init(l.slot->buf[p].data_ptr(), static_cast<int>(l.slot->bytes()), MPI_BYTE, l.peer,
                                    l.tag + q * tag_stride_, MPI_COMM_WORLD, &sreq[p][q].back()), "posting send of " + l.slot->name);
        }
    }
    const char* crash_rank = std::getenv("EDGEC_TEST_CRASH_RANK");
    int crash_at = crash_rank && std::atoi(crash_rank) == ctx_.rank
                       ? std::atoi(std::getenv("EDGEC_TEST_CRASH_FRAME") ? std::getenv("EDGEC_TEST_CRASH_FRAME") : "0") : -1;
    for (int j = 0; j < std::min(2, count); ++j) start_recvs(rreq[j & 1], global(j));
    std::vector<double> t;
    for (int j = 0; j < count; ++j) {
      int p = j & 1, f = global(j);
      ctx_.frame = f;
      t.push_back(now());
      wait(rreq[p], "waiting for an input tensor (did its sender die?)");
      t.push_back(now());
      wait(sreq[p][0], "waiting for a consumer to take an output tensor");
      wait(sreq[p][1], "waiting for a consumer to take an output tensor");
      if (j == crash_at) _exit(17);
      t.push_back(now());
      compute(p, f);
      t.push_back(now());
      if (j + 2 < count) start_recvs(rreq[p], global(j + 2));
      start_sends(sreq[p], f);
      t.push_back(now());
      for (Slot& s : results_) {
        if (!s.kept.defined() || f < ctx_.warmup) continue;
        std::memcpy(static_cast<char*>(s.kept.data_ptr()) + (j - skipped) * s.bytes(), s.buf[p].data_ptr(), s.bytes());
      }
    }
    for (int p = 0; p < 2; ++p)
      for (int q = 0; q < 2; ++q) wait(sreq[p][q], "draining the last sends");
    for (auto* reqs : {&rreq[0], &rreq[1], &sreq[0][0], &sreq[0][1], &sreq[1][0], &sreq[1][1]})
      for (MPI_Request& r : *reqs) MPI_Request_free(&r);
    return t;
  }

  // A replicated output stage's replicas send their measured frames to replica 0, which writes them in
  // frame order: measured frame i (global f = warmup + i) from replica f % r, at its local position.
  void write_outputs() const {
    int width = 1;
    for (const RoleInfo& o : ctx_.roles) width = std::max(width, o.replicas);
    for (const Slot& s : results_) {
      if (!s.kept.defined()) continue;
      std::vector<int64_t> shape{ctx_.frames};
      shape.insert(shape.end(), s.shape.begin(), s.shape.end());
      std::string path = ctx_.rundir + "/output" + std::to_string(s.keep) + ".npy";
      if (ctx_.replicas == 1) {
        write_npy(path, s.dtype, shape, s.kept.data_ptr());
        continue;
      }
      int tag = 2 * tag_stride_ + s.keep * width;
      if (ctx_.replica != 0) {
        size_t bytes = ctx_.local_measured(ctx_.rank) * s.bytes();
        if (bytes > static_cast<size_t>(INT32_MAX)) ctx_.fail("output '" + s.name + "' is too large to gather");
        ctx_.check(MPI_Send(s.kept.data_ptr(), static_cast<int>(bytes), MPI_BYTE, replica_rank(0),
                            tag + ctx_.replica, MPI_COMM_WORLD), "sending output " + s.name + " to replica 0");
        continue;
      }
      ffi::Tensor all = empty(s.dtype, shape);
      for (int a = 0; a < ctx_.replicas; ++a) {
        int r = replica_rank(a), measured = ctx_.local_measured(r), skipped = ctx_.local_count(r) - measured;
        ffi::Tensor part = s.kept;
        if (a != 0) {
          std::vector<int64_t> part_shape{measured};
          part_shape.insert(part_shape.end(), s.shape.begin(), s.shape.end());
          part = empty(s.dtype, part_shape);
          ctx_.check(MPI_Recv(part.data_ptr(), static_cast<int>(measured * s.bytes()), MPI_BYTE, r, tag + a,
                              MPI_COMM_WORLD, MPI_STATUS_IGNORE), "gathering output " + s.name + " from rank " + std::to_string(r));
        }
        for (int k = 0; k < measured; ++k) {
          int i = a + (skipped + k) * ctx_.replicas - ctx_.warmup;
          std::memcpy(static_cast<char*>(all.data_ptr()) + i * s.bytes(),
                      static_cast<const char*>(part.data_ptr()) + k * s.bytes(), s.bytes());
        }
      }
      write_npy(path, s.dtype, shape, all.data_ptr());
    }
  }

 private:
  int replica_rank(int a) const {
    for (int r = 0; r < static_cast<int>(ctx_.roles.size()); ++r)
      if (ctx_.roles[r].stage == ctx_.stage && ctx_.roles[r].replica == a) return r;
    ctx_.fail("no rank runs replica " + std::to_string(a) + " of this stage");
  }

  Slot& add(std::deque<Slot>& table, const char* name, DLDataType dtype, std::vector<int64_t> shape) {
    table.push_back(Slot{name, dtype, std::move(shape), {}, -1, -1, {}, {}});
    Slot& s = table.back();
    for (auto& b : s.buf) b = empty(dtype, s.shape);
    return s;
  }

  static Slot* find(std::deque<Slot>& table, const char* name) {
    for (Slot& s : table)
      if (s.name == name) return &s;
    return nullptr;
  }

  // The receives of global frame f into one buffer set: only on the links that carry f.
  void start_recvs(std::vector<MPI_Request>& reqs, int f) {
    for (size_t i = 0; i < recvs_.size(); ++i)
      if (recvs_[i].carries(f)) ctx_.check(MPI_Start(&reqs[i]), "receiving");
  }

  // The sends of global frame f from one buffer set, each with its consumer's tag parity.
  void start_sends(std::vector<MPI_Request> (&by_parity)[2], int f) {
    for (size_t i = 0; i < sends_.size(); ++i)
      if (sends_[i].carries(f)) ctx_.check(MPI_Start(&by_parity[(f / sends_[i].peer_replicas) & 1][i]), "sending");
  }

  void wait(std::vector<MPI_Request>& reqs, const char* what) {
    if (!reqs.empty()) ctx_.check(MPI_Waitall(static_cast<int>(reqs.size()), reqs.data(), MPI_STATUSES_IGNORE), what);
  }

  void compute(int p, int frame) {
    std::vector<ffi::AnyView> args;
    for (Slot& s : params_) {
      if (s.feed >= 0) {
        int64_t samples = s.stack.shape()[0], j = ((frame - ctx_.warmup) % samples + samples) % samples;
        std::memcpy(s.buf[p].data_ptr(), static_cast<char*>(s.stack.data_ptr()) + j * s.bytes(), s.bytes());
      }
      args.emplace_back(s.buf[p]);
    }
    ffi::Any out;
    try {
      main_->CallPacked(args.data(), static_cast<int32_t>(args.size()), &out);
    } catch (const std::exception& e) {
      ctx_.fail(std::string("the stage module failed: ") + e.what());
    }
    std::vector<ffi::Tensor> got;
    if (auto one = out.as<ffi::Tensor>()) {
      got.push_back(*one);
    } else {
      for (const ffi::Any& item : out.cast<ffi::Array<ffi::Any>>()) got.push_back(item.cast<ffi::Tensor>());
    }
    if (got.size() != results_.size())
      ctx_.fail("the stage module returned " + std::to_string(got.size()) + " tensors, expected " +
                std::to_string(results_.size()));
    for (size_t i = 0; i < got.size(); ++i) {
      Slot& s = results_[i];
      std::vector<int64_t> shape(got[i].shape().begin(), got[i].shape().end());
      DLDataType dt = got[i].dtype();
      if (shape != s.shape || dt.code != s.dtype.code || dt.bits != s.dtype.bits)
        ctx_.fail("tensor '" + s.name + "' came out as " + dtype_str(dt) + shape_str(shape) + ", expected " +
                  dtype_str(s.dtype) + shape_str(s.shape));
      std::memcpy(s.buf[p].data_ptr(), got[i].data_ptr(), s.bytes());
    }
  }

  Context& ctx_;
  int tag_stride_;
  std::optional<ffi::Module> vm_;
  std::optional<ffi::Function> main_;
  std::deque<Slot> params_, results_;
  std::vector<Link> recvs_, sends_;
};

}  // namespace edgec

#include "edgec_report.h"
