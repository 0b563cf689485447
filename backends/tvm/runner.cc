// edgec stage runner: loads an exported TVM Relax module, runs `main` once, writes the outputs.
//
// Why C++: a stage compiled for another architecture (aarch64) cannot be loaded by this
// machine's Python; cross-compiled against that architecture's libtvm_runtime, this runner
// executes it under qemu-user. Exchange format (text index + raw little-endian data, no numpy
// dependency): <dir>/inputs.txt has one line per input "code bits lanes ndim d0 .. dn file";
// the runner writes <dir>/outputs.txt in the same format plus one out<i>.bin per output.
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace ffi = tvm::ffi;

namespace {

struct CPUAlloc {
  void AllocData(DLTensor* t) {
    size_t bytes = Bytes(*t);
    t->data = std::aligned_alloc(64, (bytes + 63) / 64 * 64 + 64);
  }
  void FreeData(DLTensor* t) { std::free(t->data); }
  static size_t Bytes(const DLTensor& t) {
    size_t n = (t.dtype.bits * t.dtype.lanes + 7) / 8;
    for (int i = 0; i < t.ndim; ++i) n *= static_cast<size_t>(t.shape[i]);
    return n;
  }
};

ffi::Tensor ReadTensor(const std::string& dir, const std::string& line) {
  std::istringstream in(line);
  int code, bits, lanes, ndim;
  in >> code >> bits >> lanes >> ndim;
  std::vector<int64_t> shape(ndim);
  for (auto& d : shape) in >> d;
  std::string file;
  in >> file;
  DLDataType dtype{static_cast<uint8_t>(code), static_cast<uint8_t>(bits), static_cast<uint16_t>(lanes)};
  ffi::Tensor t = ffi::Tensor::FromNDAlloc(CPUAlloc(), ffi::ShapeView(shape.data(), shape.size()), dtype,
                                           DLDevice{kDLCPU, 0});
  std::ifstream data(dir + "/" + file, std::ios::binary);
  data.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(CPUAlloc::Bytes(*t.GetDLTensorPtr())));
  if (!data) throw std::runtime_error("short input file " + file);
  return t;
}

void WriteTensor(const std::string& dir, int index, const ffi::Tensor& t, std::ofstream& index_file) {
  const DLTensor& dl = *t.GetDLTensorPtr();
  std::string file = "out" + std::to_string(index) + ".bin";
  index_file << int(dl.dtype.code) << ' ' << int(dl.dtype.bits) << ' ' << int(dl.dtype.lanes) << ' ' << dl.ndim;
  for (int i = 0; i < dl.ndim; ++i) index_file << ' ' << dl.shape[i];
  index_file << ' ' << file << '\n';
  std::ofstream out(dir + "/" + file, std::ios::binary);
  out.write(static_cast<const char*>(dl.data) + dl.byte_offset, static_cast<std::streamsize>(CPUAlloc::Bytes(dl)));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: " << argv[0] << " MODULE.so DIR\n";
    return 2;
  }
  try {
    std::string dir = argv[2];
    ffi::Module lib = ffi::Module::LoadFromFile(argv[1]);
    ffi::Module vm = lib->GetFunction("vm_load_executable").value()().cast<ffi::Module>();
    vm->GetFunction("vm_initialization").value()(static_cast<int>(kDLCPU), 0, 2);
    ffi::Function main_fn = vm->GetFunction("main").value();
    std::vector<ffi::Tensor> inputs;
    std::ifstream index(dir + "/inputs.txt");
    for (std::string line; std::getline(index, line);) {
      if (!line.empty()) inputs.push_back(ReadTensor(dir, line));
    }
    std::vector<ffi::AnyView> args(inputs.begin(), inputs.end());
    ffi::Any result;
    main_fn.CallPacked(args.data(), static_cast<int32_t>(args.size()), &result);
    std::ofstream out_index(dir + "/outputs.txt");
    if (auto tensor = result.as<ffi::Tensor>()) {
      WriteTensor(dir, 0, *tensor, out_index);
    } else {
      auto outputs = result.cast<ffi::Array<ffi::Any>>();
      for (size_t i = 0; i < outputs.size(); ++i) WriteTensor(dir, int(i), outputs[i].cast<ffi::Tensor>(), out_index);
    }
  } catch (const std::exception& e) {
    std::cerr << "edgec stage runner: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
