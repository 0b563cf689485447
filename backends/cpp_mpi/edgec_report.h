// edgec_report.h: command line, and the run report rank 0 writes (the JSON of edgec/runtime/report.py).
//
// Why in C++: a board running the generated program has no Python, yet its user wants the same
// figures `edgec run` prints (frames/s, latency percentiles, per-stage compute/wait/send, bytes per
// link). The arithmetic follows `summarize` in edgec/runtime/report.py line by line.
#pragma once

#include <map>

namespace edgec {

// When the ranks of a host ask for more threads than it has cores (as in tests on one machine),
// TVM's workers must neither spin-wait nor pin themselves to the same cores.
inline void share_cores(const Context& ctx, int threads) {
  MPI_Comm host;
  int host_threads = threads;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &host);
  ctx.check(MPI_Allreduce(&threads, &host_threads, 1, MPI_INT, MPI_SUM, host), "counting threads per host");
  MPI_Comm_free(&host);
  if (host_threads > sysconf(_SC_NPROCESSORS_ONLN)) {
    setenv("TVM_THREAD_POOL_SPIN_COUNT", "0", 0);
    setenv("TVM_BIND_THREADS", "0", 0);
  }
}

inline Context parse_args(int argc, char** argv, const std::vector<StageInfo>& stages) {
  Context ctx;
  MPI_Init(&argc, &argv);
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &ctx.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ctx.size);
  ctx.stage = ctx.rank;
  ctx.rundir = ".";
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--frames" && i + 1 < argc) ctx.frames = std::atoi(argv[++i]);
    else if (a == "--warmup" && i + 1 < argc) ctx.warmup = std::atoi(argv[++i]);
    else if (a == "--keep-outputs") ctx.keep_outputs = true;
    else positional.push_back(a);
  }
  if (positional.size() != 2) {
    if (ctx.rank == 0) std::fprintf(stderr, "usage: %s ROOT RUNDIR [--frames N] [--warmup W] [--keep-outputs]\n", argv[0]);
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  ctx.root = positional[0];
  ctx.rundir = positional[1];
  if (ctx.rank < static_cast<int>(stages.size())) ctx.device = stages[ctx.rank].device;
  if (ctx.size != static_cast<int>(stages.size()))
    ctx.fail("started with " + std::to_string(ctx.size) + " ranks, but the program has " +
             std::to_string(stages.size()) + " ranks");
  if (ctx.frames < 1 || ctx.warmup < 0) ctx.fail("--frames must be at least 1 and --warmup at least 0");
  share_cores(ctx, std::max(stages[ctx.rank].threads, 1));
  return ctx;
}

// With replicated stages: `ranks` (one row per rank), every rank's role and every rank's links.
inline Context parse_args(int argc, char** argv, const std::vector<StageInfo>& ranks,
                          const std::vector<RoleInfo>& roles, const std::vector<LinkInfo>& links) {
  Context ctx = parse_args(argc, argv, ranks);
  if (roles.size() != ranks.size()) ctx.fail("the program's role table does not match its rank table");
  ctx.roles = roles, ctx.links = links;
  ctx.stage = roles[ctx.rank].stage, ctx.replica = roles[ctx.rank].replica, ctx.replicas = roles[ctx.rank].replicas;
  return ctx;
}

inline double percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  double pos = q / 100.0 * (v.size() - 1);
  size_t lo = static_cast<size_t>(pos), hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - lo);
}

inline std::string num(double x) {
  char b[32];
  std::snprintf(b, sizeof b, "%.17g", x);
  return b;
}

// Gathers every rank's frame times on rank 0, which writes RUNDIR/report.json.
inline void write_report(const Context& ctx, const std::vector<double>& times, double origin,
                         const std::vector<StageInfo>& stages, const std::vector<TransferInfo>& transfers,
                         const std::vector<OutputInfo>& outputs) {
  int total = ctx.warmup + ctx.frames, n = ctx.size;
  bool dealt = false;
  for (int r = 0; r < n; ++r) dealt = dealt || ctx.role_of(r).replicas > 1;
  char host[MPI_MAX_PROCESSOR_NAME] = {0};
  int len = 0;
  MPI_Get_processor_name(host, &len);
  std::vector<int> counts(n), displs(n);
  for (int r = 0, sum = 0; r < n; sum += counts[r], ++r) counts[r] = 5 * ctx.local_count(r), displs[r] = sum;
  std::vector<double> all(ctx.rank == 0 ? displs[n - 1] + counts[n - 1] : 0), origins(n);
  std::vector<char> hosts(ctx.rank == 0 ? MPI_MAX_PROCESSOR_NAME * n : 0);
  ctx.check(MPI_Gatherv(times.data(), counts[ctx.rank], MPI_DOUBLE, all.data(), counts.data(), displs.data(), MPI_DOUBLE,
                        0, MPI_COMM_WORLD), "gathering times");
  ctx.check(MPI_Gather(&origin, 1, MPI_DOUBLE, origins.data(), 1, MPI_DOUBLE, 0, MPI_COMM_WORLD), "gathering clocks");
  ctx.check(MPI_Gather(host, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, hosts.data(), MPI_MAX_PROCESSOR_NAME, MPI_CHAR, 0,
                       MPI_COMM_WORLD), "gathering host names");
  if (ctx.rank != 0) return;
  auto t = [&](int r, int j, int k) { return all[displs[r] + j * 5 + k]; };  // rank r's local frame j
  auto host_of = [&](int r) { return std::string(&hosts[r * MPI_MAX_PROCESSOR_NAME]); };
  bool one_host = true;
  for (int r = 1; r < n; ++r) one_host = one_host && host_of(r) == host_of(0);
  auto shift = [&](int r) { return one_host ? 0.0 : origins[r]; };
  std::vector<bool> producer(n, false);
  for (const OutputInfo& o : outputs)
    for (int r = 0; r < n; ++r) producer[r] = producer[r] || ctx.role_of(r).stage == o.stage;
  if (std::find(producer.begin(), producer.end(), true) == producer.end()) producer.assign(n, true);
  // Per global frame: the first start over the ranks that computed it, the last end over its producing ranks.
  std::vector<double> first(total, 1e300), last(total, -1e300);
  for (int r = 0; r < n; ++r)
    for (int j = 0; j < ctx.local_count(r); ++j) {
      int f = ctx.global_frame(r, j);
      first[f] = std::min(first[f], t(r, j, 2) - shift(r));
      if (producer[r]) last[f] = std::max(last[f], t(r, j, 3) - shift(r));
    }
  std::vector<double> latency;
  for (int f = ctx.warmup; f < total; ++f) latency.push_back(last[f] - first[f]);
  double start = ctx.warmup >= 1 ? last[ctx.warmup - 1] : first[0];
  double span = std::max(last[total - 1] - start, 1e-12), fps = ctx.frames / span, mean = 0;
  for (double l : latency) mean += l / latency.size();
  std::string js = "{\n \"frames\": " + std::to_string(ctx.frames) + ",\n \"warmup\": " + std::to_string(ctx.warmup) +
                   ",\n \"ranks\": " + std::to_string(n) + ",\n \"seconds\": " + num(span) +
                   ",\n \"throughput_fps\": " + num(fps) + ",\n \"latency_ms\": {\"p50\": " +
                   num(1e3 * percentile(latency, 50)) + ", \"p95\": " + num(1e3 * percentile(latency, 95)) +
                   ", \"p99\": " + num(1e3 * percentile(latency, 99)) + ", \"mean\": " + num(1e3 * mean) + "},\n";
  std::string rows;
  std::vector<double> compute_ms(n), send_ms(n);
  std::vector<std::pair<int, double>> effective;  // as report.py: unreplicated ranks, then replicated stages
  for (int r = 0; r < n; ++r) {
    RoleInfo role = ctx.role_of(r);
    int measured = ctx.local_measured(r), from = ctx.local_count(r) - measured;
    double c = 0, w = 0, s = 0, per = std::max(measured, 1);
    std::vector<double> each;
    for (int j = from; j < from + measured; ++j) {
      c += t(r, j, 3) - t(r, j, 2);
      w += t(r, j, 1) - t(r, j, 0);
      s += (t(r, j, 2) - t(r, j, 1)) + (t(r, j, 4) - t(r, j, 3));
      each.push_back(t(r, j, 3) - t(r, j, 2));
    }
    compute_ms[r] = 1e3 * c / per, send_ms[r] = 1e3 * s / per;
    if (role.replicas == 1) effective.push_back({r, compute_ms[r]});
    std::string replica = role.replicas == 1 ? "" :
        ", \"stage\": " + std::to_string(role.stage) + ", \"replica\": " + std::to_string(role.replica) +
        ", \"frames\": " + std::to_string(measured) + ", \"compute_p50_ms\": " + num(each.empty() ? 0 : 1e3 * percentile(each, 50));
    rows += std::string(r ? ",\n" : "") + "  {\"rank\": " + std::to_string(r) + ", \"device\": " +
            json_str(stages[r].device) + ", \"host\": " + json_str(host_of(r)) + ", \"threads\": " +
            std::to_string(std::max(stages[r].threads, 1)) + ", \"compute_ms\": " + num(compute_ms[r]) +
            ", \"wait_ms\": " + num(1e3 * w / per) + ", \"send_ms\": " + num(send_ms[r]) +
            ", \"busy\": " + num(c / span) + replica + "}";
  }
  // Per replicated stage: its replicas' ranks, devices, frames and compute, and the effective time per frame
  // (the slowest replica's mean compute / r) next to one replica's (the mean over replicas).
  std::map<int, std::vector<int>> replicated;
  for (int r = 0; r < n; ++r)
    if (ctx.role_of(r).replicas > 1) replicated[ctx.role_of(r).stage].push_back(r);
  std::string figures;
  for (auto& [stage, ranks] : replicated) {
    std::sort(ranks.begin(), ranks.end(), [&](int a, int b) { return ctx.role_of(a).replica < ctx.role_of(b).replica; });
    double worst = 0, mean = 0, blocked = 1e300;
    std::string ids, devices, frames, computes;
    for (size_t i = 0; i < ranks.size(); ++i) {
      int r = ranks[i];
      std::string sep = i ? ", " : "";
      worst = std::max(worst, compute_ms[r]), mean += compute_ms[r] / ranks.size(), blocked = std::min(blocked, send_ms[r]);
      ids += sep + std::to_string(r), devices += sep + json_str(stages[r].device);
      frames += sep + std::to_string(ctx.local_measured(r)), computes += sep + num(compute_ms[r]);
    }
    double count = static_cast<double>(ranks.size()), eff = worst / count;
    effective.push_back({stage, eff});
    figures += std::string(figures.empty() ? "\n" : ",\n") + "  {\"stage\": " + std::to_string(stage) +
               ", \"count\": " + std::to_string(ranks.size()) + ", \"ranks\": [" + ids + "], \"devices\": [" + devices +
               "], \"frames\": [" + frames + "], \"compute_ms\": [" + computes + "], \"effective_ms\": " + num(eff) +
               ", \"gain\": " + num(worst > 0 ? mean / eff : count) + ", \"send_blocked_ms\": " + num(blocked) + "}";
  }
  int slowest = 0;
  double slowest_ms = -1;
  for (const auto& [key, ms] : effective)
    if (ms > slowest_ms) slowest_ms = ms, slowest = key;
  js += " \"slowest_stage\": " + std::to_string(slowest) + ",\n \"efficiency\": " + num(fps * slowest_ms / 1e3) +
        ",\n \"stages\": [\n" + rows + "\n ],\n" + (dealt ? " \"replicas\": [" + figures + "\n ],\n" : "") + " \"links\": [";
  // Bytes per (src, dst) rank pair; with replicas each link counts only the measured frames it carried.
  struct Moved { std::string names; long per_frame = 0, total = 0; };
  std::map<std::pair<int, int>, Moved> pairs;
  auto add = [&](int src, int dst, const char* tensor, long bytes, long frames) {
    Moved& m = pairs[{src, dst}];
    m.names += (m.names.empty() ? "" : ", ") + json_str(tensor), m.per_frame += bytes, m.total += bytes * frames;
  };
  if (!dealt)
    for (const TransferInfo& tr : transfers) add(tr.src, tr.dst, tr.tensor, tr.bytes, ctx.frames);
  for (const LinkInfo& l : ctx.links) {
    if (!l.send) continue;
    long frames = 0, bytes = 0;
    for (int j = ctx.local_count(l.rank) - ctx.local_measured(l.rank); j < ctx.local_count(l.rank); ++j)
      frames += ctx.global_frame(l.rank, j) % l.every == l.offset;
    for (const TransferInfo& tr : transfers)
      if (std::string(tr.tensor) == l.tensor) bytes = tr.bytes;
    if (frames) add(l.rank, l.peer, l.tensor, bytes, frames);
  }
  bool first_link = true;
  for (const auto& [key, m] : pairs) {
    js += std::string(first_link ? "\n" : ",\n") + "  {\"src\": " + std::to_string(key.first) + ", \"dst\": " +
          std::to_string(key.second) + ", \"src_device\": " + json_str(stages[key.first].device) +
          ", \"dst_device\": " + json_str(stages[key.second].device) + ", \"tensors\": [" + m.names +
          "], \"bytes_per_frame\": " + std::to_string(m.per_frame) + ", \"bytes_total\": " +
          std::to_string(m.total) + ", \"mb_per_s\": " + num(m.total / span / 1e6) + "}";
    first_link = false;
  }
  char library[MPI_MAX_LIBRARY_VERSION_STRING] = {0};
  MPI_Get_library_version(library, &len);
  std::string lib(library);
  lib = lib.substr(0, lib.find('\n'));
  js += std::string(pairs.empty() ? "" : "\n ") + "],\n \"mpi_library\": " + json_str(lib) +
        ",\n \"engine\": \"cpp\"\n}\n";
  std::string path = ctx.rundir + "/report.json";
  { std::ofstream(path + ".part") << js; }
  std::rename((path + ".part").c_str(), path.c_str());
}

// The whole run of one rank: barrier, frame loop, outputs, report.
inline int run_stage(Context& ctx, Stage& stage, const std::vector<StageInfo>& stages,
                     const std::vector<TransferInfo>& transfers, const std::vector<OutputInfo>& outputs) {
  ctx.check(MPI_Barrier(MPI_COMM_WORLD), "waiting for all ranks to start");
  double origin = now();
  std::vector<double> times = stage.run();
  ctx.frame = -1;
  if (ctx.keep_outputs) stage.write_outputs();
  write_report(ctx, times, origin, stages, transfers, outputs);
  MPI_Finalize();
  return 0;
}

}  // namespace edgec
