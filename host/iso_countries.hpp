/// @file iso_countries.hpp
/// @brief Fixed ISO 3166-1 data that a countries table does not hold: the alpha-3 codes and the
/// two exceptional reservations, each with the alpha-2 code it stands for. Part of the binary,
/// not a reference file: a table passed with `--countries` names the countries, this only reads
/// other spellings of their codes.
#pragma once

#include <string_view>

namespace capledger::detail {

/// A code that is not an alpha-2 code, and the alpha-2 code it stands for.
struct iso_code_alias {
  std::string_view code;
  std::string_view alpha2;
};

/// Every ISO 3166-1 alpha-3 code with its alpha-2 code, ascending by alpha-3 (looked up by binary
/// search). Written on 2026-11-27 from PyPI's pycountry 26.2.16 (249 countries), as
/// `sorted((c.alpha_3, c.alpha_2) for c in pycountry.countries)`; write it again the same way
/// when ISO changes a code.
inline constexpr iso_code_alias iso_alpha3_codes[] = {
    {"ABW", "AW"}, {"AFG", "AF"}, {"AGO", "AO"}, {"AIA", "AI"}, {"ALA", "AX"}, {"ALB", "AL"}, {"AND", "AD"},
    {"ARE", "AE"}, {"ARG", "AR"}, {"ARM", "AM"}, {"ASM", "AS"}, {"ATA", "AQ"}, {"ATF", "TF"}, {"ATG", "AG"},
    {"AUS", "AU"}, {"AUT", "AT"}, {"AZE", "AZ"}, {"BDI", "BI"}, {"BEL", "BE"}, {"BEN", "BJ"}, {"BES", "BQ"},
    {"BFA", "BF"}, {"BGD", "BD"}, {"BGR", "BG"}, {"BHR", "BH"}, {"BHS", "BS"}, {"BIH", "BA"}, {"BLM", "BL"},
    {"BLR", "BY"}, {"BLZ", "BZ"}, {"BMU", "BM"}, {"BOL", "BO"}, {"BRA", "BR"}, {"BRB", "BB"}, {"BRN", "BN"},
    {"BTN", "BT"}, {"BVT", "BV"}, {"BWA", "BW"}, {"CAF", "CF"}, {"CAN", "CA"}, {"CCK", "CC"}, {"CHE", "CH"},
    {"CHL", "CL"}, {"CHN", "CN"}, {"CIV", "CI"}, {"CMR", "CM"}, {"COD", "CD"}, {"COG", "CG"}, {"COK", "CK"},
    {"COL", "CO"}, {"COM", "KM"}, {"CPV", "CV"}, {"CRI", "CR"}, {"CUB", "CU"}, {"CUW", "CW"}, {"CXR", "CX"},
    {"CYM", "KY"}, {"CYP", "CY"}, {"CZE", "CZ"}, {"DEU", "DE"}, {"DJI", "DJ"}, {"DMA", "DM"}, {"DNK", "DK"},
    {"DOM", "DO"}, {"DZA", "DZ"}, {"ECU", "EC"}, {"EGY", "EG"}, {"ERI", "ER"}, {"ESH", "EH"}, {"ESP", "ES"},
    {"EST", "EE"}, {"ETH", "ET"}, {"FIN", "FI"}, {"FJI", "FJ"}, {"FLK", "FK"}, {"FRA", "FR"}, {"FRO", "FO"},
    {"FSM", "FM"}, {"GAB", "GA"}, {"GBR", "GB"}, {"GEO", "GE"}, {"GGY", "GG"}, {"GHA", "GH"}, {"GIB", "GI"},
    {"GIN", "GN"}, {"GLP", "GP"}, {"GMB", "GM"}, {"GNB", "GW"}, {"GNQ", "GQ"}, {"GRC", "GR"}, {"GRD", "GD"},
    {"GRL", "GL"}, {"GTM", "GT"}, {"GUF", "GF"}, {"GUM", "GU"}, {"GUY", "GY"}, {"HKG", "HK"}, {"HMD", "HM"},
    {"HND", "HN"}, {"HRV", "HR"}, {"HTI", "HT"}, {"HUN", "HU"}, {"IDN", "ID"}, {"IMN", "IM"}, {"IND", "IN"},
    {"IOT", "IO"}, {"IRL", "IE"}, {"IRN", "IR"}, {"IRQ", "IQ"}, {"ISL", "IS"}, {"ISR", "IL"}, {"ITA", "IT"},
    {"JAM", "JM"}, {"JEY", "JE"}, {"JOR", "JO"}, {"JPN", "JP"}, {"KAZ", "KZ"}, {"KEN", "KE"}, {"KGZ", "KG"},
    {"KHM", "KH"}, {"KIR", "KI"}, {"KNA", "KN"}, {"KOR", "KR"}, {"KWT", "KW"}, {"LAO", "LA"}, {"LBN", "LB"},
    {"LBR", "LR"}, {"LBY", "LY"}, {"LCA", "LC"}, {"LIE", "LI"}, {"LKA", "LK"}, {"LSO", "LS"}, {"LTU", "LT"},
    {"LUX", "LU"}, {"LVA", "LV"}, {"MAC", "MO"}, {"MAF", "MF"}, {"MAR", "MA"}, {"MCO", "MC"}, {"MDA", "MD"},
    {"MDG", "MG"}, {"MDV", "MV"}, {"MEX", "MX"}, {"MHL", "MH"}, {"MKD", "MK"}, {"MLI", "ML"}, {"MLT", "MT"},
    {"MMR", "MM"}, {"MNE", "ME"}, {"MNG", "MN"}, {"MNP", "MP"}, {"MOZ", "MZ"}, {"MRT", "MR"}, {"MSR", "MS"},
    {"MTQ", "MQ"}, {"MUS", "MU"}, {"MWI", "MW"}, {"MYS", "MY"}, {"MYT", "YT"}, {"NAM", "NA"}, {"NCL", "NC"},
    {"NER", "NE"}, {"NFK", "NF"}, {"NGA", "NG"}, {"NIC", "NI"}, {"NIU", "NU"}, {"NLD", "NL"}, {"NOR", "NO"},
    {"NPL", "NP"}, {"NRU", "NR"}, {"NZL", "NZ"}, {"OMN", "OM"}, {"PAK", "PK"}, {"PAN", "PA"}, {"PCN", "PN"},
    {"PER", "PE"}, {"PHL", "PH"}, {"PLW", "PW"}, {"PNG", "PG"}, {"POL", "PL"}, {"PRI", "PR"}, {"PRK", "KP"},
    {"PRT", "PT"}, {"PRY", "PY"}, {"PSE", "PS"}, {"PYF", "PF"}, {"QAT", "QA"}, {"REU", "RE"}, {"ROU", "RO"},
    {"RUS", "RU"}, {"RWA", "RW"}, {"SAU", "SA"}, {"SDN", "SD"}, {"SEN", "SN"}, {"SGP", "SG"}, {"SGS", "GS"},
    {"SHN", "SH"}, {"SJM", "SJ"}, {"SLB", "SB"}, {"SLE", "SL"}, {"SLV", "SV"}, {"SMR", "SM"}, {"SOM", "SO"},
    {"SPM", "PM"}, {"SRB", "RS"}, {"SSD", "SS"}, {"STP", "ST"}, {"SUR", "SR"}, {"SVK", "SK"}, {"SVN", "SI"},
    {"SWE", "SE"}, {"SWZ", "SZ"}, {"SXM", "SX"}, {"SYC", "SC"}, {"SYR", "SY"}, {"TCA", "TC"}, {"TCD", "TD"},
    {"TGO", "TG"}, {"THA", "TH"}, {"TJK", "TJ"}, {"TKL", "TK"}, {"TKM", "TM"}, {"TLS", "TL"}, {"TON", "TO"},
    {"TTO", "TT"}, {"TUN", "TN"}, {"TUR", "TR"}, {"TUV", "TV"}, {"TWN", "TW"}, {"TZA", "TZ"}, {"UGA", "UG"},
    {"UKR", "UA"}, {"UMI", "UM"}, {"URY", "UY"}, {"USA", "US"}, {"UZB", "UZ"}, {"VAT", "VA"}, {"VCT", "VC"},
    {"VEN", "VE"}, {"VGB", "VG"}, {"VIR", "VI"}, {"VNM", "VN"}, {"VUT", "VU"}, {"WLF", "WF"}, {"WSM", "WS"},
    {"YEM", "YE"}, {"ZAF", "ZA"}, {"ZMB", "ZM"}, {"ZWE", "ZW"}};

/// ISO 3166-1's exceptionally reserved codes that exports use for a country: `UK` (the United
/// Kingdom's own code, reserved at its request) and `EL` (the EU's code for Greece).
inline constexpr iso_code_alias iso_reserved_codes[] = {{"EL", "GR"}, {"UK", "GB"}};

/// Other names exports give a country, as `country_spelled_alike` compares them (ASCII letters,
/// upper-cased, and digits), ascending: common names where the table holds the formal one
/// (`Russia`, `Turkey`, `Czech Republic`, `Burma`), formal ones where it holds the common one
/// (`Korea, Republic of`, `Iran, Islamic Republic of`), abbreviations (`UAE`, `PRC`, `DPRK`, `DRC`)
/// and the United Kingdom's nations. Written by hand (2026-11-27); none is an alpha-3 code.
// clang-format off
inline constexpr iso_code_alias iso_other_names[] = {
    {"BOLIVIAPLURINATIONALSTATEOF", "BO"}, {"BRITAIN", "GB"}, {"BRUNEI", "BN"}, {"BURMA", "MM"},
    {"CAPEVERDE", "CV"}, {"CONGOBRAZZAVILLE", "CG"}, {"CONGOKINSHASA", "CD"}, {"COTEDIVOIRE", "CI"},
    {"CZECHREPUBLIC", "CZ"}, {"DEMOCRATICPEOPLESREPUBLICOFKOREA", "KP"}, {"DEMOCRATICREPUBLICOFCONGO", "CD"},
    {"DEMOCRATICREPUBLICOFTHECONGO", "CD"}, {"DPRK", "KP"}, {"DRC", "CD"}, {"DRCONGO", "CD"},
    {"ENGLAND", "GB"}, {"GREATBRITAIN", "GB"}, {"HOLLAND", "NL"}, {"HOLYSEE", "VA"}, {"HONGKONGSAR", "HK"},
    {"IRANISLAMICREPUBLICOF", "IR"}, {"ISLAMICREPUBLICOFIRAN", "IR"}, {"IVORYCOAST", "CI"},
    {"KINGDOMOFSAUDIARABIA", "SA"}, {"KOREADEMOCRATICPEOPLESREPUBLICOF", "KP"}, {"KOREANORTH", "KP"},
    {"KOREAREPUBLICOF", "KR"}, {"KOREASOUTH", "KR"}, {"KSA", "SA"}, {"LAOPDR", "LA"},
    {"LAOPEOPLESDEMOCRATICREPUBLIC", "LA"}, {"MACAOSAR", "MO"}, {"MACAU", "MO"}, {"MACAUSAR", "MO"},
    {"MACEDONIA", "MK"}, {"MAINLANDCHINA", "CN"}, {"MICRONESIA", "FM"}, {"MOLDOVAREPUBLICOF", "MD"},
    {"NORTHERNIRELAND", "GB"}, {"PALESTINE", "PS"}, {"PEOPLESREPUBLICOFCHINA", "CN"}, {"PRC", "CN"},
    {"REPUBLICOFKOREA", "KR"}, {"REPUBLICOFTHECONGO", "CG"}, {"ROK", "KR"}, {"RUSSIA", "RU"},
    {"SCOTLAND", "GB"}, {"SWAZILAND", "SZ"}, {"SYRIANARABREPUBLIC", "SY"}, {"TAIWANPROVINCEOFCHINA", "TW"},
    {"TANZANIAUNITEDREPUBLICOF", "TZ"}, {"THENETHERLANDS", "NL"}, {"TURKEY", "TR"}, {"TURKIYE", "TR"},
    {"UAE", "AE"}, {"UNITEDSTATESOFAMERICA", "US"}, {"VATICAN", "VA"}, {"VATICANCITY", "VA"},
    {"VENEZUELABOLIVARIANREPUBLICOF", "VE"}, {"WALES", "GB"}};
// clang-format on

}  // namespace capledger::detail
