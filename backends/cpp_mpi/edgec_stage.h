// edgec_stage.h: one rank's stage — its TVM module, its double-buffered tensors, the frame loop.
//
// Why persistent requests and synchronous sends: the same as edgec/runtime/pipeline.py, so the C++
// program and the Python runtime behave alike (a fast stage runs at most two frames ahead, and a
// message can only match the buffer set of its own frame parity).
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

struct Link { Slot* slot; int peer, tag; };

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
  void feed(Slot& slot, int input) {
    slot.feed = input;
    slot.stack = read_npy(ctx_, ctx_.rundir + "/input" + std::to_string(input) + ".npy", slot.dtype, slot.shape);
  }
  void keep(Slot& slot, int output) {
    slot.keep = output;
    if (!ctx_.keep_outputs) return;
    std::vector<int64_t> shape{ctx_.frames};
    shape.insert(shape.end(), slot.shape.begin(), slot.shape.end());
    slot.kept = empty(slot.dtype, shape);
  }

  // Rows of (before input wait, inputs in, sends free, compute done, sends posted), one per frame.
  std::vector<double> run() {
    int total = ctx_.warmup + ctx_.frames;
    std::vector<MPI_Request> rreq[2], sreq[2];
    for (int p = 0; p < 2; ++p) {
      for (const Link& l : recvs_) {
        rreq[p].emplace_back();
        ctx_.check(MPI_Recv_init(l.slot->buf[p].data_ptr(), static_cast<int>(l.slot->bytes()), MPI_BYTE, l.peer,
                                 l.tag + p * tag_stride_, MPI_COMM_WORLD, &rreq[p].back()), "posting receive of " + l.slot->name);
      }
      for (const Link& l : sends_) {
        sreq[p].emplace_back();
        ctx_.check(MPI_Ssend_init(l.slot->buf[p].data_ptr(), static_cast<int>(l.slot->bytes()), MPI_BYTE, l.peer,
                                  l.tag + p * tag_stride_, MPI_COMM_WORLD, &sreq[p].back()), "posting send of " + l.slot->name);
      }
    }
    const char* crash_rank = std::getenv("EDGEC_TEST_CRASH_RANK");
    int crash_at = crash_rank && std::atoi(crash_rank) == ctx_.rank
                       ? std::atoi(std::getenv("EDGEC_TEST_CRASH_FRAME") ? std::getenv("EDGEC_TEST_CRASH_FRAME") : "0") : -1;
    for (int f = 0; f < std::min(2, total); ++f) start(rreq[f & 1], "receiving");
    std::vector<double> t;
    for (int f = 0; f < total; ++f) {
      int p = f & 1;
      ctx_.frame = f;
      t.push_back(now());
      wait(rreq[p], "waiting for an input tensor (did its sender die?)");
      t.push_back(now());
      wait(sreq[p], "waiting for a consumer to take an output tensor");
      if (f == crash_at) _exit(17);
      t.push_back(now());
      compute(p, f);
      t.push_back(now());
      if (f + 2 < total) start(rreq[p], "receiving");
      start(sreq[p], "sending");
      t.push_back(now());
      for (Slot& s : results_) {
        if (!s.kept.defined() || f < ctx_.warmup) continue;
        std::memcpy(static_cast<char*>(s.kept.data_ptr()) + (f - ctx_.warmup) * s.bytes(), s.buf[p].data_ptr(), s.bytes());
      }
    }
    for (int p = 0; p < 2; ++p) wait(sreq[p], "draining the last sends");
    for (auto* reqs : {&rreq[0], &rreq[1], &sreq[0], &sreq[1]})
      for (MPI_Request& r : *reqs) MPI_Request_free(&r);
    return t;
  }

  void write_outputs() const {
    for (const Slot& s : results_) {
      if (!s.kept.defined()) continue;
      std::vector<int64_t> shape{ctx_.frames};
      shape.insert(shape.end(), s.shape.begin(), s.shape.end());
      write_npy(ctx_.rundir + "/output" + std::to_string(s.keep) + ".npy", s.dtype, shape, s.kept.data_ptr());
    }
  }

 private:
  Slot& add(std::deque<Slot>& table, const char* name, DLDataType dtype, std::vector<int64_t> shape) {
    table.push_back(Slot{name, dtype, std::move(shape), {}, -1, -1, {}, {}});
    Slot& s = table.back();
    for (auto& b : s.buf) b = empty(dtype, s.shape);
    return s;
  }

  void start(std::vector<MPI_Request>& reqs, const char* what) {
    if (!reqs.empty()) ctx_.check(MPI_Startall(static_cast<int>(reqs.size()), reqs.data()), what);
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
