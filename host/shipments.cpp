/// @file shipments.cpp
/// @brief Shipment-log ingest: CSV records validated and encoded once into columns (SPEC §1.1, §7).
#include <capledger/error.hpp>
#include <capledger/shipments.hpp>

#include "csv.hpp"
#include "file_io.hpp"

#include <algorithm>
#include <limits>
#include <numeric>
#include <optional>
#include <unordered_set>

namespace capledger {

// ---- dictionary -------------------------------------------------------------------------------

dictionary::dictionary(const dictionary& other) : strings_(other.strings_)
{
  codes_.reserve(strings_.size());
  for (std::size_t i = 0; i < strings_.size(); ++i) {
    codes_.emplace(strings_[i], static_cast<std::int32_t>(i));
  }
}

dictionary& dictionary::operator=(const dictionary& other)
{
  if (this != &other) { *this = dictionary(other); }
  return *this;
}

std::int32_t dictionary::encode(std::string_view text)
{
  const auto it = codes_.find(text);
  if (it != codes_.end()) { return it->second; }
  if (strings_.size() >= static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max())) {
    throw config_error("more than 2^31-1 distinct values in one dictionary");
  }
  const auto code = static_cast<std::int32_t>(strings_.size());
  strings_.emplace_back(text);
  codes_.emplace(strings_.back(), code);
  return code;
}

std::int32_t dictionary::find(std::string_view text) const
{
  const auto it = codes_.find(text);
  return it == codes_.end() ? -1 : it->second;
}

std::vector<std::int32_t> dictionary::sorted_codes() const
{
  std::vector<std::int32_t> codes(strings_.size());
  std::iota(codes.begin(), codes.end(), 0);
  std::sort(codes.begin(), codes.end(),
            [this](std::int32_t a, std::int32_t b) { return strings_[a] < strings_[b]; });
  return codes;
}

// ---- shipment_log -----------------------------------------------------------------------------

std::string_view shipment_log::shipment_id(std::int64_t line) const
{
  const std::int64_t begin = line == 0 ? 0 : id_end[static_cast<std::size_t>(line - 1)];
  const std::int64_t end   = id_end[static_cast<std::size_t>(line)];
  return {id_bytes.data() + begin, static_cast<std::size_t>(end - begin)};
}

std::string shipment_log::source_of(std::int64_t line) const
{
  const auto file = std::upper_bound(file_end.begin(), file_end.end(), line) - file_end.begin();
  return files[static_cast<std::size_t>(file)].path + ":" +
         std::to_string(source_line[static_cast<std::size_t>(line)]);
}

shipment_view shipment_log::view() const
{
  const auto& c = columns;
  return {c.size(),        c.date.data(),    c.entity.data(), c.country.data(), c.chip.data(),
          c.pathway.data(), c.quantity.data(), c.tpp.data(),   c.order.data(),   c.exporter.data()};
}

// ---- builder ----------------------------------------------------------------------------------

namespace {

/// Hash and equality of accepted lines by shipment id, reading the ids from the log's id bytes,
/// so that the duplicate-id set stores 8 bytes per line and no strings.
struct id_hash {
  const shipment_log* log;
  std::size_t operator()(std::int64_t line) const noexcept
  {
    return std::hash<std::string_view>()(log->shipment_id(line));
  }
};
struct id_equal {
  const shipment_log* log;
  bool operator()(std::int64_t a, std::int64_t b) const noexcept
  {
    return log->shipment_id(a) == log->shipment_id(b);
  }
};

/// The columns of SPEC §1.1, in the order `shipment_fields` lists them.
enum record_column : int { c_id, c_date, c_entity, c_country, c_chip, c_quantity, c_pathway, c_order,
                           c_exporter, c_tpp, record_columns };

/// A bad field: reason code, detail and the field where it was found.
struct line_defect {
  const char* reason;
  std::string detail;
  const detail::csv_field* field;
};

bool add_overflows(std::uint64_t& sum, std::int64_t value)
{
  const std::uint64_t magnitude =
    value < 0 ? 0 - static_cast<std::uint64_t>(value) : static_cast<std::uint64_t>(value);
  sum += magnitude;
  return magnitude > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) ||
         sum > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
}

}  // namespace

struct shipment_log_builder::state {
  const country_table& countries;
  ingest_options options;
  shipment_log log;
  std::unordered_set<std::int64_t, id_hash, id_equal> ids;
  // Sums of |tpp| and |quantity| over accepted lines. Keeping both within int64 guarantees that
  // every total and running total, in any grouping and order, is exact on every backend.
  std::uint64_t abs_tpp_sum      = 0;
  std::uint64_t abs_quantity_sum = 0;

  state(const country_table& c, chip_table chips, ingest_options o)
    : countries(c), options(std::move(o)), ids(1024, id_hash{&log}, id_equal{&log})
  {
    log.chips        = std::move(chips);
    abs_tpp_sum      = options.earlier_abs_tpp_sum;
    abs_quantity_sum = options.earlier_abs_quantity_sum;
  }

  void reject(const std::string& file, const line_defect& defect, std::int64_t line,
              std::int64_t column, std::string_view raw)
  {
    if (!options.keep_rejects) {
      throw parse_error(file, line, column, defect.reason, defect.detail);
    }
    log.rejects.push_back({file, line, column, defect.reason, defect.detail, std::string(raw)});
    if (options.max_rejects >= 0 && static_cast<std::int64_t>(log.rejects.size()) > options.max_rejects) {
      throw too_many_rejects("more than " + std::to_string(options.max_rejects) +
                             " rejected lines (--max-rejects); last: " + file + ":" +
                             std::to_string(line) + ":" + std::to_string(column) + ": " +
                             defect.reason + ": " + defect.detail);
    }
  }

  void ingest(const std::string& name, std::string_view text);
  /// Validates and encodes one record whose fields are indexed by `record_column`.
  void accept(const std::string& name, const detail::csv_field* fields, std::int64_t record_line,
              std::string_view raw);
};

shipment_log_builder::shipment_log_builder(const country_table& countries, chip_table chips,
                                           ingest_options options)
  : state_(std::make_unique<state>(countries, std::move(chips), options))
{
}

shipment_log_builder::~shipment_log_builder() = default;

void shipment_log_builder::add_file(const std::string& path)
{
  const std::string text = read_input_file(path);
  add_text(path, text);
}

void shipment_log_builder::add_text(const std::string& name, std::string_view text)
{
  input_file info;
  info.path   = name;
  info.bytes  = static_cast<std::int64_t>(text.size());
  info.sha256 = detail::sha256_hex(text);
  state_->log.files.push_back(info);
  state_->ingest(name, text);
  state_->log.file_end.push_back(state_->log.columns.size());
}

void shipment_log_builder::add_stored(const input_file& file,
                                      const std::function<bool(shipment_fields&)>& next,
                                      const std::vector<rejected_line>& rejected)
{
  shipment_log& log = state_->log;
  log.files.push_back(file);
  log.files.back().lines_read = 0;  // counted by accept(), then checked against the original
  shipment_fields f;
  while (next(f)) {
    detail::csv_field fields[record_columns];
    const std::string_view values[record_columns] = {f.shipment_id, f.date,    f.entity,   f.country,
                                                     f.chip,        f.quantity, f.pathway, f.order_id,
                                                     f.exporter,    f.tpp_per_unit};
    for (int c = 0; c < record_columns; ++c) { fields[c] = {values[c], f.source_line, 1}; }
    ++log.files.back().lines_read;
    ++log.lines_read;
    state_->accept(file.path, fields, f.source_line, {});
  }
  const std::int64_t accepted = log.files.back().lines_read;
  log.files.back().lines_read = file.lines_read;
  log.lines_read += file.lines_read - accepted;  // the rejected lines were read too
  log.rejects.insert(log.rejects.end(), rejected.begin(), rejected.end());
  log.file_end.push_back(log.columns.size());
}

const std::vector<rejected_line>& shipment_log_builder::rejects() const { return state_->log.rejects; }

shipment_log shipment_log_builder::finish()
{
  shipment_log log = std::move(state_->log);
  state_->ids      = std::unordered_set<std::int64_t, id_hash, id_equal>(1024, id_hash{&state_->log},
                                                                   id_equal{&state_->log});
  return log;
}

void shipment_log_builder::state::ingest(const std::string& name, std::string_view text)
{
  detail::csv_reader reader(text);
  const auto first = reader.next();
  // A missing or malformed header is fatal even with --rejects: nothing in the file could be
  // interpreted.
  if (first == detail::csv_status::end) {
    throw parse_error(name, 1, 1, "MISSING_COLUMN", "the file has no header row");
  }
  if (first != detail::csv_status::record) {
    const bool unterminated = first == detail::csv_status::unterminated_quote;
    throw parse_error(name, reader.error_line(), reader.error_column(),
                      unterminated ? "UNTERMINATED_QUOTE" : "BAD_QUOTE",
                      unterminated ? "a quoted field of the header row is never closed"
                                   : "text follows a closing quote in the header row");
  }
  const detail::csv_header header(reader.fields());
  const int col_id       = header.find("shipment_id");
  const int col_date     = header.find("date");
  const int col_entity   = header.find("entity");
  const int col_country  = header.find("country");
  const int col_chip     = header.find("chip");
  const int col_quantity = header.find("quantity");
  const int col_pathway  = header.find("pathway");
  const int col_order    = header.find("order_id");
  const int col_exporter = header.find("exporter");
  const int col_tpp      = header.find("tpp_per_unit");
  for (const auto& [index, column_name] :
       {std::pair{col_id, "shipment_id"}, std::pair{col_date, "date"}, std::pair{col_entity, "entity"},
        std::pair{col_country, "country"}, std::pair{col_chip, "chip"},
        std::pair{col_quantity, "quantity"}}) {
    if (index < 0) {
      throw parse_error(name, reader.record_line(), 1, "MISSING_COLUMN",
                        std::string("required column '") + column_name + "' is missing");
    }
  }

  const int columns[record_columns] = {col_id,      col_date,    col_entity,   col_country, col_chip,
                                        col_quantity, col_pathway, col_order, col_exporter, col_tpp};
  input_file& info = log.files.back();
  while (true) {
    const auto status = reader.next();
    if (status == detail::csv_status::end) { break; }
    ++info.lines_read;
    ++log.lines_read;
    if (status != detail::csv_status::record) {
      const bool unterminated = status == detail::csv_status::unterminated_quote;
      reject(name,
             {unterminated ? "UNTERMINATED_QUOTE" : "BAD_QUOTE",
              unterminated ? "a quoted field is never closed" : "text follows a closing quote",
              nullptr},
             reader.error_line(), reader.error_column(), reader.raw());
      continue;
    }
    const auto& fields = reader.fields();
    if (static_cast<int>(fields.size()) != header.size()) {
      const auto& at = fields.size() > static_cast<std::size_t>(header.size())
                         ? fields[static_cast<std::size_t>(header.size())]
                         : fields.back();
      reject(name,
             {"WRONG_FIELD_COUNT",
              "expected " + std::to_string(header.size()) + " fields, found " + std::to_string(fields.size()),
              nullptr},
             at.line, at.column, reader.raw());
      continue;
    }
    detail::csv_field record[record_columns];
    for (int c = 0; c < record_columns; ++c) {
      // An absent optional column reads as an empty field (never a defect: only required columns can be bad).
      record[c] = columns[c] < 0 ? detail::csv_field{} : fields[static_cast<std::size_t>(columns[c])];
    }
    accept(name, record, reader.record_line(), reader.raw());
  }
}

void shipment_log_builder::state::accept(const std::string& name, const detail::csv_field* record,
                                         std::int64_t record_line, std::string_view raw)
{
  shipment_columns& out = log.columns;
  // Validate every field in column-of-SPEC order; the first defect is the one reported.
  std::optional<line_defect> bad;
  const auto& f_id = record[c_id];
  if (f_id.value.empty()) { bad = line_defect{"EMPTY_FIELD", "empty shipment_id", &f_id}; }

  const auto& f_date = record[c_date];
  const auto day     = parse_date(f_date.value);
  if (!bad && !day) {
    bad = line_defect{"BAD_DATE", "'" + std::string(f_date.value) + "' is not a valid YYYY-MM-DD date", &f_date};
  }
  const auto& f_entity = record[c_entity];
  if (!bad && f_entity.value.empty()) { bad = line_defect{"EMPTY_FIELD", "empty entity", &f_entity}; }

  const auto& f_country = record[c_country];
  const int country     = countries.find(f_country.value);
  if (!bad && country < 0) {
    bad = line_defect{"UNKNOWN_COUNTRY", "'" + std::string(f_country.value) + "' is not in the countries table",
                      &f_country};
  }
  const auto& f_quantity = record[c_quantity];
  std::int64_t quantity  = 0;
  if (!bad && (!detail::parse_int64(f_quantity.value, quantity) || quantity == 0)) {
    bad = line_defect{"BAD_QUANTITY",
                      "'" + std::string(f_quantity.value) + "' is not a non-zero integer", &f_quantity};
  }
  const auto& f_tpp       = record[c_tpp];
  std::int64_t tpp_per_unit = 0;
  if (!bad && !f_tpp.value.empty() &&
      (!detail::parse_int64(f_tpp.value, tpp_per_unit) || tpp_per_unit <= 0)) {
    bad = line_defect{"BAD_TPP_PER_UNIT",
                      "'" + std::string(f_tpp.value) + "' is not a positive integer", &f_tpp};
  }
  const auto& f_chip = record[c_chip];
  const int chip     = log.chips.find(f_chip.value);
  if (!bad && f_chip.value.empty()) { bad = line_defect{"EMPTY_FIELD", "empty chip", &f_chip}; }
  if (!bad && tpp_per_unit == 0) {
    if (chip < 0 || !log.chips.rows[static_cast<std::size_t>(chip)].known) {
      bad = line_defect{"UNKNOWN_CHIP",
                        "'" + std::string(f_chip.value) + "' is not in the chips table and the line has no tpp_per_unit",
                        &f_chip};
    } else {
      tpp_per_unit = log.chips.rows[static_cast<std::size_t>(chip)].tpp;
    }
  }
  const auto& f_pathway = record[c_pathway];
  int pathway_code      = 0;  // LICENSE when empty or absent
  if (!bad && !f_pathway.value.empty()) {
    const std::string upper = detail::to_upper(f_pathway.value);
    pathway_code            = -1;
    for (int p = 0; p < pathway_count; ++p) {
      if (upper == pathway_name(static_cast<pathway>(p))) { pathway_code = p; }
    }
    if (pathway_code < 0) {
      bad = line_defect{"UNKNOWN_PATHWAY", "'" + std::string(f_pathway.value) + "' is not a pathway", &f_pathway};
    }
  }
  std::int64_t tpp = 0;
  if (!bad && __builtin_mul_overflow(quantity, tpp_per_unit, &tpp)) {
    bad = line_defect{"TPP_OVERFLOW", "quantity x tpp_per_unit exceeds 64 bits", &f_quantity};
  }
  if (!bad) {
    std::uint64_t tpp_sum = abs_tpp_sum;
    std::uint64_t qty_sum = abs_quantity_sum;
    if (add_overflows(tpp_sum, tpp) || add_overflows(qty_sum, quantity)) {
      bad = line_defect{"TPP_OVERFLOW", "the log's totals would exceed 64 bits (sum of |tpp| or |quantity| > 2^63-1)",
                        &f_quantity};
    } else {
      abs_tpp_sum      = tpp_sum;
      abs_quantity_sum = qty_sum;
    }
  }
  const std::int64_t line_index = out.size();
  if (!bad && options.earlier_id) {
    if (const auto earlier = options.earlier_id(f_id.value)) {
      bad = line_defect{"DUPLICATE_ID",
                        "shipment id '" + std::string(f_id.value) + "' was already used at " + *earlier, &f_id};
      abs_tpp_sum -= static_cast<std::uint64_t>(tpp < 0 ? -tpp : tpp);
      abs_quantity_sum -= static_cast<std::uint64_t>(quantity < 0 ? -quantity : quantity);
    }
  }
  if (!bad) {
    // Tentatively store the id; the set compares it in place and it is dropped if repeated.
    log.id_bytes.insert(log.id_bytes.end(), f_id.value.begin(), f_id.value.end());
    log.id_end.push_back(static_cast<std::int64_t>(log.id_bytes.size()));
    const auto [it, inserted] = ids.insert(line_index);
    if (!inserted) {
      bad = line_defect{"DUPLICATE_ID",
                        "shipment id '" + std::string(f_id.value) + "' was already used at " + log.source_of(*it),
                        &f_id};
      log.id_end.pop_back();
      log.id_bytes.resize(log.id_end.empty() ? 0 : static_cast<std::size_t>(log.id_end.back()));
      abs_tpp_sum -= static_cast<std::uint64_t>(tpp < 0 ? -tpp : tpp);
      abs_quantity_sum -= static_cast<std::uint64_t>(quantity < 0 ? -quantity : quantity);
    }
  }
  if (bad) {
    const detail::csv_field& at = bad->field != nullptr ? *bad->field : record[c_id];
    reject(name, *bad, at.line, at.column, raw);
    return;
  }

  const auto chip_code = chip >= 0 ? static_cast<std::uint16_t>(chip) : log.chips.add_adhoc(f_chip.value);
  const auto& f_order  = record[c_order];
  out.date.push_back(*day);
  out.entity.push_back(log.entities.encode(f_entity.value));
  out.country.push_back(static_cast<std::uint16_t>(country));
  out.chip.push_back(chip_code);
  out.pathway.push_back(static_cast<std::uint8_t>(pathway_code));
  out.quantity.push_back(quantity);
  out.tpp.push_back(tpp);
  // Orders matter only to the LPP per-order limit; encoding them for other lines would
  // build a dictionary as large as the log for nothing.
  out.order.push_back(pathway_code == static_cast<int>(pathway::lpp)
                        ? log.orders.encode(f_order.value.empty() ? f_id.value : f_order.value)
                        : -1);
  out.exporter.push_back(log.exporters.encode(record[c_exporter].value));
  log.source_line.push_back(record_line);
  if (options.on_accepted) {
    options.on_accepted(shipment_fields{f_id.value, f_date.value, f_entity.value, f_country.value,
                                        f_chip.value, f_quantity.value, f_pathway.value, f_order.value,
                                        record[c_exporter].value, f_tpp.value, record_line});
  }
}

}  // namespace capledger
