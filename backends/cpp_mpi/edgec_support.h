// edgec_support.h: what every generated edgec pipeline program shares (copied next to main.cpp).
//
// Why a header and not generated code: the per-model part (which rank runs which stage, which
// tensors it receives and sends, with which tags) is generated into main.cpp and stays short and
// readable; the frame loop, the .npy reader/writer, error handling and the report are the same
// for every model. The loop mirrors edgec/runtime/pipeline.py: two buffer sets, persistent
// receives for frames k and k+1 always posted, synchronous sends (backpressure), and
// tag = transfer tag + (k % 2) * number of transfers.
#pragma once

#include <mpi.h>
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace edgec {

namespace ffi = tvm::ffi;

inline const DLDataType f32{kDLFloat, 32, 1};
inline const DLDataType f16{kDLFloat, 16, 1};
inline const DLDataType i8{kDLInt, 8, 1};
inline const DLDataType u8{kDLUInt, 8, 1};
inline const DLDataType i32{kDLInt, 32, 1};
inline const DLDataType i64{kDLInt, 64, 1};
inline const DLDataType b8{kDLBool, 8, 1};

// Every element type a boundary, input or output tensor may have: numpy's name and .npy descr.
// float16 is plain 16-bit storage here (the program only moves it; the stage modules compute).
struct DtypeName { DLDataType type; const char* name; const char* descr; };
inline const DtypeName kDtypeNames[] = {
    {f32, "float32", "<f4"}, {f16, "float16", "<f2"}, {i8, "int8", "|i1"}, {u8, "uint8", "|u1"},
    {i32, "int32", "<i4"}, {i64, "int64", "<i8"}, {b8, "bool", "|b1"},
};

inline const DtypeName* dtype_name(DLDataType t) {
  for (const DtypeName& d : kDtypeNames)
    if (d.type.code == t.code && d.type.bits == t.bits && d.type.lanes == t.lanes) return &d;
  return nullptr;
}

struct StageInfo { const char* device; const char* module; int threads; };
struct TransferInfo { const char* tensor; int src; int dst; int tag; long bytes; };
struct OutputInfo { const char* name; int stage; };
// With replicated stages (`replicate`): a rank's role, and its links, each carrying only frames f with
// f % every == offset; a send's tag parity is the consumer's local parity (f / peer_replicas) % 2.
struct RoleInfo { int stage, replica, replicas; };
struct LinkInfo { int rank; bool send; const char* tensor; int peer, tag, every, offset, peer_replicas; };

inline std::string json_str(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) { out += ' '; continue; }
    out += c;
  }
  return out + "\"";
}

inline double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

inline std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

inline const char* dtype_str(DLDataType t) {
  const DtypeName* d = dtype_name(t);
  return d ? d->name : "unsupported";
}

inline const char* npy_descr(DLDataType t) {
  const DtypeName* d = dtype_name(t);
  return d ? d->descr : "?";
}

inline size_t nbytes(DLDataType t, const std::vector<int64_t>& shape) {
  size_t n = t.bits / 8;
  for (int64_t d : shape) n *= static_cast<size_t>(d);
  return n;
}

struct Alloc {
  void AllocData(DLTensor* t) {
    size_t bytes = (t->dtype.bits / 8);
    for (int i = 0; i < t->ndim; ++i) bytes *= static_cast<size_t>(t->shape[i]);
    t->data = std::aligned_alloc(64, (bytes + 63) / 64 * 64 + 64);
  }
  void FreeData(DLTensor* t) { std::free(t->data); }
};

inline ffi::Tensor empty(DLDataType dtype, const std::vector<int64_t>& shape) {
  return ffi::Tensor::FromNDAlloc(Alloc(), ffi::ShapeView(shape.data(), shape.size()), dtype, DLDevice{kDLCPU, 0});
}

// The process-wide context: who we are, where we run, and how to fail loudly.
struct Context {
  int rank = 0, size = 1, frame = -1;
  std::string root, rundir, device;
  int frames = 1, warmup = 0;
  bool keep_outputs = false;
  int stage = 0, replica = 0, replicas = 1;  // this rank computes global frames replica, replica + replicas, ...
  std::vector<RoleInfo> roles;               // by rank; empty without replicated stages (rank = stage)
  std::vector<LinkInfo> links;               // every rank's links; empty without replicated stages

  RoleInfo role_of(int r) const { return roles.empty() ? RoleInfo{r, 0, 1} : roles[r]; }
  // How many of the global frames below n rank r computes.
  int below(int r, int n) const {
    RoleInfo o = role_of(r);
    return o.replica < n ? (n - o.replica + o.replicas - 1) / o.replicas : 0;
  }
  int local_count(int r) const { return below(r, warmup + frames); }
  int local_measured(int r) const { return local_count(r) - below(r, warmup); }
  int global_frame(int r, int j) const { return role_of(r).replica + j * role_of(r).replicas; }

  [[noreturn]] void fail(const std::string& cause) const {
    std::string record = "{\"rank\": " + std::to_string(rank) + ", \"cause\": " + json_str(cause) +
                         ", \"frame\": " + (frame >= 0 ? std::to_string(frame) : "null") +
                         ", \"detail\": \"\", \"time\": " + std::to_string(static_cast<double>(std::time(nullptr))) + "}";
    std::string path = rundir + "/error-rank" + std::to_string(rank) + ".json";
    { std::ofstream(path + ".tmp") << record; }
    std::rename((path + ".tmp").c_str(), path.c_str());
    std::fprintf(stderr, "edgec: rank %d (stage %d on device '%s'): %s\nEDGEC_RANK_ERROR %s\n", rank, stage,
                 device.c_str(), cause.c_str(), record.c_str());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 2);
    std::exit(2);
  }

  void check(int mpi_rc, const std::string& what) const {
    if (mpi_rc == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(mpi_rc, text, &len);
    fail(what + ": " + std::string(text, len));
  }
};

// .npy files: little-endian, C order, version 1.0 (what numpy writes by default), of the types above.
inline ffi::Tensor read_npy(const Context& ctx, const std::string& path, DLDataType dtype,
                            const std::vector<int64_t>& frame_shape) {
  std::ifstream in(path, std::ios::binary);
  if (!in) ctx.fail("cannot open input file '" + path + "'");
  char magic[8];
  in.read(magic, 8);
  if (!in || std::memcmp(magic, "\x93NUMPY", 6) != 0) ctx.fail("'" + path + "' is not a .npy file");
  uint32_t header_len = 0;
  if (magic[6] == 1) {
    uint16_t n = 0;
    in.read(reinterpret_cast<char*>(&n), 2);
    header_len = n;
  } else {
    in.read(reinterpret_cast<char*>(&header_len), 4);
  }
  std::string header(header_len, ' ');
  in.read(header.data(), header_len);
  std::string want = std::string("'") + npy_descr(dtype) + "'";
  if (header.find("'descr': " + want) == std::string::npos)
    ctx.fail("'" + path + "' must hold " + dtype_str(dtype) + " little-endian data; header: " + header);
  if (header.find("'fortran_order': False") == std::string::npos) ctx.fail("'" + path + "' is not in C order");
  size_t open = header.find('(', header.find("'shape'")), close = header.find(')', open);
  std::vector<int64_t> shape;
  std::stringstream dims(header.substr(open + 1, close - open - 1));
  for (std::string d; std::getline(dims, d, ',');)
    if (d.find_first_not_of(' ') != std::string::npos) shape.push_back(std::stoll(d));
  std::vector<int64_t> tail(shape.begin() + (shape.empty() ? 0 : 1), shape.end());
  if (shape.empty() || shape[0] < 1 || tail != frame_shape)
    ctx.fail("'" + path + "' must be " + dtype_str(dtype) + "[frames, " + shape_str(frame_shape).substr(1) +
             ", got shape " + shape_str(shape));
  ffi::Tensor t = empty(dtype, shape);
  in.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(nbytes(dtype, shape)));
  if (!in) ctx.fail("'" + path + "' is shorter than its header says");
  return t;
}

inline void write_npy(const std::string& path, DLDataType dtype, const std::vector<int64_t>& shape,
                      const void* data) {
  std::string dims;
  for (int64_t d : shape) dims += std::to_string(d) + ", ";
  if (shape.size() > 1) dims.resize(dims.size() - 1);
  std::string header = std::string("{'descr': '") + npy_descr(dtype) +
                       "', 'fortran_order': False, 'shape': (" + dims + "), }";
  header.append(63 - (10 + header.size()) % 64, ' ');
  header += '\n';
  std::ofstream out(path + ".part", std::ios::binary);
  uint16_t len = static_cast<uint16_t>(header.size());
  out.write("\x93NUMPY\x01\x00", 8);
  out.write(reinterpret_cast<const char*>(&len), 2);
  out << header;
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(nbytes(dtype, shape)));
  out.close();
  std::rename((path + ".part").c_str(), path.c_str());
}

}  // namespace edgec

#include "edgec_stage.h"
