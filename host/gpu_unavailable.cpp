/// @file gpu_unavailable.cpp
/// @brief The GPU entry points of a build without CUDA: no GPU is ever usable.
#include <capledger/backend.hpp>
#include <capledger/error.hpp>

#include "device_read.hpp"

namespace capledger {

bool gpu_available(std::string* why)
{
  if (why != nullptr) { *why = "this build of capledger has no CUDA support"; }
  return false;
}

bool gpu_likely_present()
{
  return false;
}

std::unique_ptr<backend> make_gpu_backend(const gpu_tuning& /*tuning*/)
{
  throw device_error("this build of capledger has no CUDA support (rebuild with nvcc present)");
}

std::unique_ptr<gpu_columns> upload_to_gpu(const shipment_view& /*lines*/)
{
  throw device_error("this build of capledger has no CUDA support (rebuild with nvcc present)");
}

aggregation aggregate_on_gpu(const gpu_columns& /*lines*/, const rule_context& /*rules*/,
                             const dictionary_sizes& /*sizes*/, gpu_timing* /*timing*/,
                             const gpu_tuning& /*tuning*/)
{
  throw device_error("this build of capledger has no CUDA support (rebuild with nvcc present)");
}

}  // namespace capledger

namespace capledger::detail {

std::unique_ptr<gpu_line_reader> make_gpu_line_reader(const device_csv::tables& /*tables*/,
                                                      std::size_t /*chunk_bytes*/)
{
  throw device_error("this build of capledger has no CUDA support (rebuild with nvcc present)");
}

}  // namespace capledger::detail
