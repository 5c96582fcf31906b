//! OBD-II (SAE J1979) service payloads: mode 01 PIDs in engineering units, mode 02
//! freeze frames, DTC lists of modes 03/07/0A, mode 09 vehicle information.
//!
//! Everything here works on an assembled service payload (the bytes after ISO-TP or
//! ELM327 framing, starting with the response service id such as `0x41`), so the
//! same code serves raw CAN captures and ELM327 adapters. Scaling and units follow
//! python-OBD 0.7.3 so values can be compared with it one to one.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde_json::{json, Value as Json};

/// Positive responses set this bit on the request's service id.
pub const RESPONSE_BIT: u8 = 0x40;
/// Service id of a negative response (`7F <service> <code>`).
pub const NEGATIVE_RESPONSE: u8 = 0x7F;
/// PIDs 0x00, 0x20, 0x40… answer with a bitmap of the next 32 supported PIDs.
pub const SUPPORTED_PID_STEP: u8 = 0x20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObdError {
    #[error("empty OBD payload")]
    Empty,
    #[error("service 0x{0:02X} is not an OBD-II response this decoder knows")]
    UnknownService(u8),
    #[error("mode 01 PID 0x{0:02X} is not known")]
    UnknownPid(u8),
    #[error("PID 0x{pid:02X} needs {need} data bytes, got {got}")]
    Short { pid: u8, need: usize, got: usize },
    #[error("mode 09 info type 0x{0:02X} is not decoded")]
    UnknownInfoType(u8),
    #[error("VIN bytes are not printable ASCII")]
    BadVin,
    #[error("DTC list count byte says {said}, payload holds {held}")]
    DtcCount { said: usize, held: usize },
    #[error("not a DTC: {0:?} (want a letter P, C, B or U and four hex digits)")]
    BadDtc(String),
}

/// Unit names used in JSON output.
pub mod unit {
    pub const PERCENT: &str = "percent";
    pub const CELSIUS: &str = "degC";
    pub const KPA: &str = "kPa";
    pub const PA: &str = "Pa";
    pub const RPM: &str = "rpm";
    pub const KMH: &str = "km/h";
    pub const DEGREE: &str = "degree";
    pub const GRAMS_PER_SECOND: &str = "g/s";
    pub const VOLT: &str = "V";
    pub const MILLIAMPERE: &str = "mA";
    pub const SECOND: &str = "s";
    pub const MINUTE: &str = "min";
    pub const KM: &str = "km";
    pub const COUNT: &str = "count";
    pub const RATIO: &str = "ratio";
    pub const LITERS_PER_HOUR: &str = "L/h";
    pub const NEWTON_METRE: &str = "Nm";
}

/// A diagnostic trouble code as its two wire bytes; displays as `P0133`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dtc(pub u16);

impl Dtc {
    pub fn from_bytes(a: u8, b: u8) -> Self {
        Self(u16::from_be_bytes([a, b]))
    }
}

impl fmt::Display for Dtc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let system = ['P', 'C', 'B', 'U'][usize::from(self.0 >> 14)];
        write!(f, "{system}{}{:03X}", (self.0 >> 12) & 0x3, self.0 & 0x0FFF)
    }
}

impl FromStr for Dtc {
    type Err = ObdError;
    fn from_str(s: &str) -> Result<Self, ObdError> {
        let bad = || ObdError::BadDtc(s.to_string());
        let mut chars = s.chars();
        let system: u16 = match chars.next().map(|c| c.to_ascii_uppercase()) {
            Some('P') => 0,
            Some('C') => 1,
            Some('B') => 2,
            Some('U') => 3,
            _ => return Err(bad()),
        };
        let rest = chars.as_str();
        if rest.len() != 4 || !rest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let digits = u16::from_str_radix(rest, 16).map_err(|_| bad())?;
        if digits >> 12 > 3 {
            return Err(bad());
        }
        Ok(Self(system << 14 | digits))
    }
}

impl serde::Serialize for Dtc {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One readiness monitor of PID 01/41.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MonitorTest {
    pub name: &'static str,
    pub available: bool,
    pub complete: bool,
}

/// PID 01 (since DTCs cleared) and PID 41 (this drive cycle).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MonitorStatus {
    pub mil: bool,
    pub dtc_count: u8,
    pub ignition: &'static str,
    pub tests: Vec<MonitorTest>,
}

/// A decoded mode 01/02 value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Quantity {
        value: f64,
        unit: &'static str,
    },
    Flag(bool),
    Text(&'static str),
    /// A PID answer python-OBD reads as "no value" (such as an invalid fuel status).
    Absent,
    Status(MonitorStatus),
    /// Fuel system 1 and 2 status texts; `None` where the byte is not a valid state.
    FuelStatus([Option<&'static str>; 2]),
    /// O2 sensor locations present, such as `B1S1`.
    Sensors(Vec<String>),
    Dtc(Option<Dtc>),
    /// The PIDs a supported-PID bitmap announces.
    Supported(Vec<u8>),
    /// Data bytes of a PID that has no decoding (python-OBD drops them too).
    Raw(Vec<u8>),
}

impl Value {
    fn q(value: f64, unit: &'static str) -> Self {
        Self::Quantity { value, unit }
    }

    /// The numeric value, if this is a quantity.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Quantity { value, .. } => Some(*value),
            _ => None,
        }
    }

    pub fn unit(&self) -> Option<&'static str> {
        match self {
            Self::Quantity { unit, .. } => Some(unit),
            _ => None,
        }
    }

    /// The value alone as JSON (the unit goes beside it, see [`Reading::to_json`]).
    pub fn to_json(&self) -> Json {
        match self {
            Self::Quantity { value, .. } => json!(value),
            Self::Flag(b) => json!(b),
            Self::Text(t) => json!(t),
            Self::Absent => Json::Null,
            Self::Status(s) => json!(s),
            Self::FuelStatus(s) => json!(s),
            Self::Sensors(s) => json!(s),
            Self::Dtc(d) => json!(d),
            Self::Supported(p) => json!(p.iter().map(|p| format!("{p:02X}")).collect::<Vec<_>>()),
            Self::Raw(b) => json!(hex::encode_upper(b)),
        }
    }
}

/// How a mode 01 PID's data bytes become a value.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Scale {
    Bitmap,
    Status,
    SingleDtc,
    FuelStatus,
    /// A * 100 / 255.
    Percent,
    /// (A - 128) * 100 / 128.
    PercentCentered,
    /// The whole value minus 40.
    Temp,
    /// Unsigned big-endian value times a factor plus an offset.
    Linear(f64, f64, &'static str),
    TimingAdvance,
    AirStatus,
    O2Sensors,
    O2SensorsAlt,
    Pto,
    Compliance,
    FuelType,
    SensorVoltage,
    SensorVoltageWide,
    CurrentCentered,
    EvapPressure,
    MaxMaf,
    Raw,
}

/// One mode 01 PID: its number, python-OBD's name, data length and scaling.
#[derive(Debug, Clone, Copy)]
pub struct PidDef {
    pub pid: u8,
    pub name: &'static str,
    pub description: &'static str,
    /// Data bytes after the service id and PID.
    pub len: usize,
    scale: Scale,
}

const fn def(
    pid: u8,
    name: &'static str,
    description: &'static str,
    len: usize,
    scale: Scale,
) -> PidDef {
    PidDef {
        pid,
        name,
        description,
        len,
        scale,
    }
}

use Scale::*;

/// Every mode 01 PID this decoder knows, in PID order.
pub const MODE01: &[PidDef] = &[
    def(0x00, "PIDS_A", "Supported PIDs [01-20]", 4, Bitmap),
    def(0x01, "STATUS", "Status since DTCs cleared", 4, Status),
    def(
        0x02,
        "FREEZE_DTC",
        "DTC that triggered the freeze frame",
        2,
        SingleDtc,
    ),
    def(0x03, "FUEL_STATUS", "Fuel system status", 2, FuelStatus),
    def(0x04, "ENGINE_LOAD", "Calculated engine load", 1, Percent),
    def(0x05, "COOLANT_TEMP", "Engine coolant temperature", 1, Temp),
    def(
        0x06,
        "SHORT_FUEL_TRIM_1",
        "Short term fuel trim - bank 1",
        1,
        PercentCentered,
    ),
    def(
        0x07,
        "LONG_FUEL_TRIM_1",
        "Long term fuel trim - bank 1",
        1,
        PercentCentered,
    ),
    def(
        0x08,
        "SHORT_FUEL_TRIM_2",
        "Short term fuel trim - bank 2",
        1,
        PercentCentered,
    ),
    def(
        0x09,
        "LONG_FUEL_TRIM_2",
        "Long term fuel trim - bank 2",
        1,
        PercentCentered,
    ),
    def(
        0x0A,
        "FUEL_PRESSURE",
        "Fuel pressure",
        1,
        Linear(3.0, 0.0, unit::KPA),
    ),
    def(
        0x0B,
        "INTAKE_PRESSURE",
        "Intake manifold pressure",
        1,
        Linear(1.0, 0.0, unit::KPA),
    ),
    def(0x0C, "RPM", "Engine speed", 2, Linear(0.25, 0.0, unit::RPM)),
    def(
        0x0D,
        "SPEED",
        "Vehicle speed",
        1,
        Linear(1.0, 0.0, unit::KMH),
    ),
    def(0x0E, "TIMING_ADVANCE", "Timing advance", 1, TimingAdvance),
    def(0x0F, "INTAKE_TEMP", "Intake air temperature", 1, Temp),
    def(
        0x10,
        "MAF",
        "Mass air flow rate",
        2,
        Linear(0.01, 0.0, unit::GRAMS_PER_SECOND),
    ),
    def(0x11, "THROTTLE_POS", "Throttle position", 1, Percent),
    def(0x12, "AIR_STATUS", "Secondary air status", 1, AirStatus),
    def(0x13, "O2_SENSORS", "O2 sensors present", 1, O2Sensors),
    def(
        0x14,
        "O2_B1S1",
        "O2: bank 1 - sensor 1 voltage",
        2,
        SensorVoltage,
    ),
    def(
        0x15,
        "O2_B1S2",
        "O2: bank 1 - sensor 2 voltage",
        2,
        SensorVoltage,
    ),
    def(
        0x16,
        "O2_B1S3",
        "O2: bank 1 - sensor 3 voltage",
        2,
        SensorVoltage,
    ),
    def(
        0x17,
        "O2_B1S4",
        "O2: bank 1 - sensor 4 voltage",
        2,
        SensorVoltage,
    ),
    def(
        0x18,
        "O2_B2S1",
        "O2: bank 2 - sensor 1 voltage",
        2,
        SensorVoltage,
    ),
    def(
        0x19,
        "O2_B2S2",
        "O2: bank 2 - sensor 2 voltage",
        2,
        SensorVoltage,
    ),
    def(
        0x1A,
        "O2_B2S3",
        "O2: bank 2 - sensor 3 voltage",
        2,
        SensorVoltage,
    ),
    def(
        0x1B,
        "O2_B2S4",
        "O2: bank 2 - sensor 4 voltage",
        2,
        SensorVoltage,
    ),
    def(
        0x1C,
        "OBD_COMPLIANCE",
        "OBD standards compliance",
        1,
        Compliance,
    ),
    def(
        0x1D,
        "O2_SENSORS_ALT",
        "O2 sensors present (alternate)",
        1,
        O2SensorsAlt,
    ),
    def(
        0x1E,
        "AUX_INPUT_STATUS",
        "Auxiliary input status (power take off)",
        1,
        Pto,
    ),
    def(
        0x1F,
        "RUN_TIME",
        "Engine run time",
        2,
        Linear(1.0, 0.0, unit::SECOND),
    ),
    def(0x20, "PIDS_B", "Supported PIDs [21-40]", 4, Bitmap),
    def(
        0x21,
        "DISTANCE_W_MIL",
        "Distance traveled with MIL on",
        2,
        Linear(1.0, 0.0, unit::KM),
    ),
    def(
        0x22,
        "FUEL_RAIL_PRESSURE_VAC",
        "Fuel rail pressure (relative to vacuum)",
        2,
        Linear(0.079, 0.0, unit::KPA),
    ),
    def(
        0x23,
        "FUEL_RAIL_PRESSURE_DIRECT",
        "Fuel rail pressure (direct inject)",
        2,
        Linear(10.0, 0.0, unit::KPA),
    ),
    def(
        0x24,
        "O2_S1_WR_VOLTAGE",
        "O2 sensor 1 WR lambda voltage",
        4,
        SensorVoltageWide,
    ),
    def(
        0x25,
        "O2_S2_WR_VOLTAGE",
        "O2 sensor 2 WR lambda voltage",
        4,
        SensorVoltageWide,
    ),
    def(
        0x26,
        "O2_S3_WR_VOLTAGE",
        "O2 sensor 3 WR lambda voltage",
        4,
        SensorVoltageWide,
    ),
    def(
        0x27,
        "O2_S4_WR_VOLTAGE",
        "O2 sensor 4 WR lambda voltage",
        4,
        SensorVoltageWide,
    ),
    def(
        0x28,
        "O2_S5_WR_VOLTAGE",
        "O2 sensor 5 WR lambda voltage",
        4,
        SensorVoltageWide,
    ),
    def(
        0x29,
        "O2_S6_WR_VOLTAGE",
        "O2 sensor 6 WR lambda voltage",
        4,
        SensorVoltageWide,
    ),
    def(
        0x2A,
        "O2_S7_WR_VOLTAGE",
        "O2 sensor 7 WR lambda voltage",
        4,
        SensorVoltageWide,
    ),
    def(
        0x2B,
        "O2_S8_WR_VOLTAGE",
        "O2 sensor 8 WR lambda voltage",
        4,
        SensorVoltageWide,
    ),
    def(0x2C, "COMMANDED_EGR", "Commanded EGR", 1, Percent),
    def(0x2D, "EGR_ERROR", "EGR error", 1, PercentCentered),
    def(
        0x2E,
        "EVAPORATIVE_PURGE",
        "Commanded evaporative purge",
        1,
        Percent,
    ),
    def(0x2F, "FUEL_LEVEL", "Fuel level input", 1, Percent),
    def(
        0x30,
        "WARMUPS_SINCE_DTC_CLEAR",
        "Warm-ups since codes cleared",
        1,
        Linear(1.0, 0.0, unit::COUNT),
    ),
    def(
        0x31,
        "DISTANCE_SINCE_DTC_CLEAR",
        "Distance traveled since codes cleared",
        2,
        Linear(1.0, 0.0, unit::KM),
    ),
    def(
        0x32,
        "EVAP_VAPOR_PRESSURE",
        "Evaporative system vapor pressure",
        2,
        EvapPressure,
    ),
    def(
        0x33,
        "BAROMETRIC_PRESSURE",
        "Barometric pressure",
        1,
        Linear(1.0, 0.0, unit::KPA),
    ),
    def(
        0x34,
        "O2_S1_WR_CURRENT",
        "O2 sensor 1 WR lambda current",
        4,
        CurrentCentered,
    ),
    def(
        0x35,
        "O2_S2_WR_CURRENT",
        "O2 sensor 2 WR lambda current",
        4,
        CurrentCentered,
    ),
    def(
        0x36,
        "O2_S3_WR_CURRENT",
        "O2 sensor 3 WR lambda current",
        4,
        CurrentCentered,
    ),
    def(
        0x37,
        "O2_S4_WR_CURRENT",
        "O2 sensor 4 WR lambda current",
        4,
        CurrentCentered,
    ),
    def(
        0x38,
        "O2_S5_WR_CURRENT",
        "O2 sensor 5 WR lambda current",
        4,
        CurrentCentered,
    ),
    def(
        0x39,
        "O2_S6_WR_CURRENT",
        "O2 sensor 6 WR lambda current",
        4,
        CurrentCentered,
    ),
    def(
        0x3A,
        "O2_S7_WR_CURRENT",
        "O2 sensor 7 WR lambda current",
        4,
        CurrentCentered,
    ),
    def(
        0x3B,
        "O2_S8_WR_CURRENT",
        "O2 sensor 8 WR lambda current",
        4,
        CurrentCentered,
    ),
    def(
        0x3C,
        "CATALYST_TEMP_B1S1",
        "Catalyst temperature: bank 1 - sensor 1",
        2,
        Linear(0.1, -40.0, unit::CELSIUS),
    ),
    def(
        0x3D,
        "CATALYST_TEMP_B2S1",
        "Catalyst temperature: bank 2 - sensor 1",
        2,
        Linear(0.1, -40.0, unit::CELSIUS),
    ),
    def(
        0x3E,
        "CATALYST_TEMP_B1S2",
        "Catalyst temperature: bank 1 - sensor 2",
        2,
        Linear(0.1, -40.0, unit::CELSIUS),
    ),
    def(
        0x3F,
        "CATALYST_TEMP_B2S2",
        "Catalyst temperature: bank 2 - sensor 2",
        2,
        Linear(0.1, -40.0, unit::CELSIUS),
    ),
    def(0x40, "PIDS_C", "Supported PIDs [41-60]", 4, Bitmap),
    def(
        0x41,
        "STATUS_DRIVE_CYCLE",
        "Monitor status this drive cycle",
        4,
        Status,
    ),
    def(
        0x42,
        "CONTROL_MODULE_VOLTAGE",
        "Control module voltage",
        2,
        Linear(0.001, 0.0, unit::VOLT),
    ),
    def(
        0x43,
        "ABSOLUTE_LOAD",
        "Absolute load value",
        2,
        Linear(100.0 / 255.0, 0.0, unit::PERCENT),
    ),
    def(
        0x44,
        "COMMANDED_EQUIV_RATIO",
        "Commanded equivalence ratio",
        2,
        Linear(0.0000305, 0.0, unit::RATIO),
    ),
    def(
        0x45,
        "RELATIVE_THROTTLE_POS",
        "Relative throttle position",
        1,
        Percent,
    ),
    def(0x46, "AMBIANT_AIR_TEMP", "Ambient air temperature", 1, Temp),
    def(
        0x47,
        "THROTTLE_POS_B",
        "Absolute throttle position B",
        1,
        Percent,
    ),
    def(
        0x48,
        "THROTTLE_POS_C",
        "Absolute throttle position C",
        1,
        Percent,
    ),
    def(
        0x49,
        "ACCELERATOR_POS_D",
        "Accelerator pedal position D",
        1,
        Percent,
    ),
    def(
        0x4A,
        "ACCELERATOR_POS_E",
        "Accelerator pedal position E",
        1,
        Percent,
    ),
    def(
        0x4B,
        "ACCELERATOR_POS_F",
        "Accelerator pedal position F",
        1,
        Percent,
    ),
    def(
        0x4C,
        "THROTTLE_ACTUATOR",
        "Commanded throttle actuator",
        1,
        Percent,
    ),
    def(
        0x4D,
        "RUN_TIME_MIL",
        "Time run with MIL on",
        2,
        Linear(1.0, 0.0, unit::MINUTE),
    ),
    def(
        0x4E,
        "TIME_SINCE_DTC_CLEARED",
        "Time since trouble codes cleared",
        2,
        Linear(1.0, 0.0, unit::MINUTE),
    ),
    def(0x4F, "MAX_VALUES", "Various max values", 4, Raw),
    def(
        0x50,
        "MAX_MAF",
        "Maximum value for mass air flow sensor",
        4,
        MaxMaf,
    ),
    def(0x51, "FUEL_TYPE", "Fuel type", 1, FuelType),
    def(0x52, "ETHANOL_PERCENT", "Ethanol fuel percent", 1, Percent),
    def(
        0x53,
        "EVAP_VAPOR_PRESSURE_ABS",
        "Absolute evap system vapor pressure",
        2,
        Linear(0.005, 0.0, unit::KPA),
    ),
    def(
        0x54,
        "EVAP_VAPOR_PRESSURE_ALT",
        "Evap system vapor pressure",
        2,
        Linear(1.0, -32767.0, unit::PA),
    ),
    def(
        0x55,
        "SHORT_O2_TRIM_B1",
        "Short term secondary O2 trim - bank 1",
        2,
        PercentCentered,
    ),
    def(
        0x56,
        "LONG_O2_TRIM_B1",
        "Long term secondary O2 trim - bank 1",
        2,
        PercentCentered,
    ),
    def(
        0x57,
        "SHORT_O2_TRIM_B2",
        "Short term secondary O2 trim - bank 2",
        2,
        PercentCentered,
    ),
    def(
        0x58,
        "LONG_O2_TRIM_B2",
        "Long term secondary O2 trim - bank 2",
        2,
        PercentCentered,
    ),
    def(
        0x59,
        "FUEL_RAIL_PRESSURE_ABS",
        "Fuel rail pressure (absolute)",
        2,
        Linear(10.0, 0.0, unit::KPA),
    ),
    def(
        0x5A,
        "RELATIVE_ACCEL_POS",
        "Relative accelerator pedal position",
        1,
        Percent,
    ),
    def(
        0x5B,
        "HYBRID_BATTERY_REMAINING",
        "Hybrid battery pack remaining life",
        1,
        Percent,
    ),
    def(0x5C, "OIL_TEMP", "Engine oil temperature", 1, Temp),
    def(
        0x5D,
        "FUEL_INJECT_TIMING",
        "Fuel injection timing",
        2,
        Linear(1.0 / 128.0, -210.0, unit::DEGREE),
    ),
    def(
        0x5E,
        "FUEL_RATE",
        "Engine fuel rate",
        2,
        Linear(0.05, 0.0, unit::LITERS_PER_HOUR),
    ),
    def(
        0x5F,
        "EMISSION_REQ",
        "Designed emission requirements",
        1,
        Raw,
    ),
    def(0x60, "PIDS_D", "Supported PIDs [61-80]", 4, Bitmap),
    // SAE J1979 PIDs past python-OBD's table, common on cars since about 2010.
    def(
        0x61,
        "DEMAND_ENGINE_TORQUE",
        "Driver's demand engine percent torque",
        1,
        Linear(1.0, -125.0, unit::PERCENT),
    ),
    def(
        0x62,
        "ACTUAL_ENGINE_TORQUE",
        "Actual engine percent torque",
        1,
        Linear(1.0, -125.0, unit::PERCENT),
    ),
    def(
        0x63,
        "REFERENCE_ENGINE_TORQUE",
        "Engine reference torque",
        2,
        Linear(1.0, 0.0, unit::NEWTON_METRE),
    ),
    def(0x80, "PIDS_E", "Supported PIDs [81-A0]", 4, Bitmap),
    def(0xA0, "PIDS_F", "Supported PIDs [A1-C0]", 4, Bitmap),
    def(0xA6, "ODOMETER", "Odometer", 4, Linear(0.1, 0.0, unit::KM)),
    def(0xC0, "PIDS_G", "Supported PIDs [C1-E0]", 4, Bitmap),
];

/// The name readings of PIDs missing from [`MODE01`] carry.
pub const UNKNOWN_PID_NAME: &str = "UNKNOWN";

/// The definition of a mode 01 PID.
pub fn pid_def(pid: u8) -> Option<&'static PidDef> {
    MODE01.iter().find(|d| d.pid == pid)
}

/// A PID given as hex (`0C`, `0x0c`) or by name (`RPM`, case-insensitive).
pub fn parse_pid(s: &str) -> Option<u8> {
    let t = s.trim();
    let hex = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    if hex.len() <= 2 && !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return u8::from_str_radix(hex, 16).ok();
    }
    MODE01
        .iter()
        .find(|d| d.name.eq_ignore_ascii_case(t))
        .map(|d| d.pid)
}

const BASE_TESTS: [&str; 3] = [
    "MISFIRE_MONITORING",
    "FUEL_SYSTEM_MONITORING",
    "COMPONENT_MONITORING",
];
const SPARK_TESTS: [Option<&str>; 8] = [
    Some("CATALYST_MONITORING"),
    Some("HEATED_CATALYST_MONITORING"),
    Some("EVAPORATIVE_SYSTEM_MONITORING"),
    Some("SECONDARY_AIR_SYSTEM_MONITORING"),
    None,
    Some("OXYGEN_SENSOR_MONITORING"),
    Some("OXYGEN_SENSOR_HEATER_MONITORING"),
    Some("EGR_VVT_SYSTEM_MONITORING"),
];
const COMPRESSION_TESTS: [Option<&str>; 8] = [
    Some("NMHC_CATALYST_MONITORING"),
    Some("NOX_SCR_AFTERTREATMENT_MONITORING"),
    None,
    Some("BOOST_PRESSURE_MONITORING"),
    None,
    Some("EXHAUST_GAS_SENSOR_MONITORING"),
    Some("PM_FILTER_MONITORING"),
    Some("EGR_VVT_SYSTEM_MONITORING"),
];
const FUEL_STATUS: [&str; 5] = [
    "Open loop due to insufficient engine temperature",
    "Closed loop, using oxygen sensor feedback to determine fuel mix",
    "Open loop due to engine load OR fuel cut due to deceleration",
    "Open loop due to system failure",
    "Closed loop, using at least one oxygen sensor but there is a fault in the feedback system",
];
const AIR_STATUS: [&str; 4] = [
    "Upstream",
    "Downstream of catalytic converter",
    "From the outside atmosphere or off",
    "Pump commanded on for diagnostics",
];
const OBD_COMPLIANCE: [&str; 34] = [
    "Undefined",
    "OBD-II as defined by the CARB",
    "OBD as defined by the EPA",
    "OBD and OBD-II",
    "OBD-I",
    "Not OBD compliant",
    "EOBD (Europe)",
    "EOBD and OBD-II",
    "EOBD and OBD",
    "EOBD, OBD and OBD II",
    "JOBD (Japan)",
    "JOBD and OBD II",
    "JOBD and EOBD",
    "JOBD, EOBD, and OBD II",
    "Reserved",
    "Reserved",
    "Reserved",
    "Engine Manufacturer Diagnostics (EMD)",
    "Engine Manufacturer Diagnostics Enhanced (EMD+)",
    "Heavy Duty On-Board Diagnostics (Child/Partial) (HD OBD-C)",
    "Heavy Duty On-Board Diagnostics (HD OBD)",
    "World Wide Harmonized OBD (WWH OBD)",
    "Reserved",
    "Heavy Duty Euro OBD Stage I without NOx control (HD EOBD-I)",
    "Heavy Duty Euro OBD Stage I with NOx control (HD EOBD-I N)",
    "Heavy Duty Euro OBD Stage II without NOx control (HD EOBD-II)",
    "Heavy Duty Euro OBD Stage II with NOx control (HD EOBD-II N)",
    "Reserved",
    "Brazil OBD Phase 1 (OBDBr-1)",
    "Brazil OBD Phase 2 (OBDBr-2)",
    "Korean OBD (KOBD)",
    "India OBD I (IOBD I)",
    "India OBD II (IOBD II)",
    "Heavy Duty Euro OBD Stage VI (HD EOBD-IV)",
];
const FUEL_TYPES: [&str; 24] = [
    "Not available",
    "Gasoline",
    "Methanol",
    "Ethanol",
    "Diesel",
    "LPG",
    "CNG",
    "Propane",
    "Electric",
    "Bifuel running Gasoline",
    "Bifuel running Methanol",
    "Bifuel running Ethanol",
    "Bifuel running LPG",
    "Bifuel running CNG",
    "Bifuel running Propane",
    "Bifuel running Electricity",
    "Bifuel running electric and combustion engine",
    "Hybrid gasoline",
    "Hybrid Ethanol",
    "Hybrid Diesel",
    "Hybrid Electric",
    "Hybrid running electric and combustion engine",
    "Hybrid Regenerative",
    "Bifuel running diesel",
];

fn be(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |acc, b| acc << 8 | u64::from(*b))
}

fn percent(a: u8) -> Value {
    Value::q(f64::from(a) * 100.0 / 255.0, unit::PERCENT)
}

fn percent_centered(a: u8) -> Value {
    Value::q((f64::from(a) - 128.0) * 100.0 / 128.0, unit::PERCENT)
}

/// The one state whose bit is set, or `None` when none or several are.
fn one_hot<const N: usize>(byte: u8, table: &[&'static str; N]) -> Option<&'static str> {
    if byte.count_ones() != 1 {
        return None;
    }
    table.get(byte.trailing_zeros() as usize).copied()
}

fn monitor_status(d: &[u8]) -> MonitorStatus {
    let (a, b, c, dd) = (d[0], d[1], d[2], d[3]);
    let compression = b & 0x08 != 0;
    let mut tests = Vec::new();
    for (bit, name) in BASE_TESTS.iter().enumerate() {
        tests.push(MonitorTest {
            name,
            available: b & (1 << bit) != 0,
            complete: b & (1 << (bit + 4)) == 0,
        });
    }
    let table = if compression {
        &COMPRESSION_TESTS
    } else {
        &SPARK_TESTS
    };
    for (bit, name) in table.iter().enumerate() {
        if let Some(name) = name {
            tests.push(MonitorTest {
                name,
                available: c & (1 << bit) != 0,
                complete: dd & (1 << bit) == 0,
            });
        }
    }
    MonitorStatus {
        mil: a & 0x80 != 0,
        dtc_count: a & 0x7F,
        ignition: if compression { "compression" } else { "spark" },
        tests,
    }
}

/// The PIDs announced by a supported-PID bitmap answered for `base` (0x00, 0x20…).
pub fn bitmap_pids(base: u8, bitmap: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, byte) in bitmap.iter().take(4).enumerate() {
        for bit in 0..8u8 {
            if byte & (0x80 >> bit) != 0 {
                let pid = u16::from(base) + (i as u16) * 8 + u16::from(bit) + 1;
                if let Ok(pid) = u8::try_from(pid) {
                    out.push(pid);
                }
            }
        }
    }
    out
}

fn decode_scaled(def: &PidDef, d: &[u8]) -> Value {
    match def.scale {
        Bitmap => Value::Supported(bitmap_pids(def.pid, d)),
        Status => Value::Status(monitor_status(d)),
        SingleDtc => {
            let code = Dtc::from_bytes(d[0], d[1]);
            Value::Dtc((code.0 != 0).then_some(code))
        }
        FuelStatus => {
            let s = [one_hot(d[0], &FUEL_STATUS), one_hot(d[1], &FUEL_STATUS)];
            if s == [None, None] {
                Value::Absent
            } else {
                Value::FuelStatus(s)
            }
        }
        Percent => percent(d[0]),
        PercentCentered => percent_centered(d[0]),
        Temp => Value::q(be(d) as f64 - 40.0, unit::CELSIUS),
        Linear(factor, offset, u) => Value::q(be(d) as f64 * factor + offset, u),
        TimingAdvance => Value::q((f64::from(d[0]) - 128.0) / 2.0, unit::DEGREE),
        AirStatus => one_hot(d[0], &AIR_STATUS).map_or(Value::Absent, Value::Text),
        O2Sensors => Value::Sensors(
            (0..8)
                .filter(|bit| d[0] & (1 << bit) != 0)
                .map(|bit| format!("B{}S{}", bit / 4 + 1, bit % 4 + 1))
                .collect(),
        ),
        O2SensorsAlt => Value::Sensors(
            (0..8)
                .filter(|bit| d[0] & (1 << bit) != 0)
                .map(|bit| format!("B{}S{}", bit / 2 + 1, bit % 2 + 1))
                .collect(),
        ),
        Pto => Value::Flag(d[0] & 0x80 != 0),
        Compliance => OBD_COMPLIANCE
            .get(usize::from(d[0]))
            .map_or(Value::Absent, |t| Value::Text(t)),
        FuelType => FUEL_TYPES
            .get(usize::from(d[0]))
            .map_or(Value::Absent, |t| Value::Text(t)),
        SensorVoltage => Value::q(f64::from(d[0]) / 200.0, unit::VOLT),
        SensorVoltageWide => Value::q(be(&d[2..4]) as f64 * 8.0 / 65535.0, unit::VOLT),
        CurrentCentered => Value::q(be(&d[2..4]) as f64 / 256.0 - 128.0, unit::MILLIAMPERE),
        EvapPressure => {
            let a = f64::from(d[0] as i8);
            let b = f64::from(d[1] as i8);
            Value::q((a * 256.0 + b) / 4.0, unit::PA)
        }
        MaxMaf => Value::q(f64::from(d[0]) * 10.0, unit::GRAMS_PER_SECOND),
        Raw => Value::Raw(d.to_vec()),
    }
}

/// Decodes the data bytes of one mode 01 (or mode 02) PID. Extra bytes are ignored.
pub fn decode_pid(pid: u8, data: &[u8]) -> Result<Value, ObdError> {
    let def = pid_def(pid).ok_or(ObdError::UnknownPid(pid))?;
    if data.len() < def.len {
        return Err(ObdError::Short {
            pid,
            need: def.len,
            got: data.len(),
        });
    }
    Ok(decode_scaled(def, &data[..def.len]))
}

/// One decoded PID.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub pid: u8,
    pub name: &'static str,
    pub value: Value,
}

impl Reading {
    /// `{"pid":"0C","name":"RPM","value":1726.0,"unit":"rpm"}`; no `unit` for non-quantities.
    pub fn to_json(&self) -> Json {
        let mut o = json!({
            "pid": format!("{:02X}", self.pid),
            "name": self.name,
            "value": self.value.to_json(),
        });
        if let Some(u) = self.value.unit() {
            o["unit"] = json!(u);
        }
        o
    }
}

/// A decoded OBD-II response payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    /// Mode 01: one or more PIDs (a request may ask for up to 6 at once).
    Current(Vec<Reading>),
    /// Mode 02: PIDs of a freeze frame.
    FreezeFrame {
        frame: u8,
        readings: Vec<Reading>,
    },
    /// Modes 03 (stored), 07 (pending), 0A (permanent).
    Dtcs {
        mode: u8,
        codes: Vec<Dtc>,
    },
    Vin(String),
    CalibrationIds(Vec<String>),
    /// Calibration verification numbers, as hex.
    Cvns(Vec<String>),
    /// Mode 09 supported info types (info type 0x00).
    SupportedInfo(Vec<u8>),
    /// Mode 09 message counts (info types 01, 03, 05…).
    InfoCount {
        info: u8,
        count: u8,
    },
    Negative {
        service: u8,
        code: u8,
    },
}

impl Response {
    /// JSON items, one per decoded value (a multi-PID answer gives several).
    pub fn to_json_items(&self) -> Vec<Json> {
        match self {
            Self::Current(rs) => rs
                .iter()
                .map(|r| {
                    let mut o = r.to_json();
                    o["mode"] = json!("01");
                    o
                })
                .collect(),
            Self::FreezeFrame { frame, readings } => readings
                .iter()
                .map(|r| {
                    let mut o = r.to_json();
                    o["mode"] = json!("02");
                    o["frame"] = json!(frame);
                    o
                })
                .collect(),
            Self::Dtcs { mode, codes } => vec![json!({
                "mode": format!("{mode:02X}"),
                "dtcs": codes,
            })],
            Self::Vin(v) => vec![json!({ "mode": "09", "vin": v })],
            Self::CalibrationIds(ids) => vec![json!({ "mode": "09", "calibration_ids": ids })],
            Self::Cvns(c) => vec![json!({ "mode": "09", "cvns": c })],
            Self::SupportedInfo(p) => vec![json!({
                "mode": "09",
                "supported": p.iter().map(|p| format!("{p:02X}")).collect::<Vec<_>>(),
            })],
            Self::InfoCount { info, count } => vec![json!({
                "mode": "09",
                "info": format!("{info:02X}"),
                "count": count,
            })],
            Self::Negative { service, code } => vec![json!({
                "negative_response": format!("{service:02X}"),
                "code": format!("{code:02X}"),
            })],
        }
    }
}

/// Splits a (possibly multi-PID) mode 01 answer body `PID data PID data…`.
fn split_pids(body: &[u8], frame_bytes: bool) -> Result<(Option<u8>, Vec<Reading>), ObdError> {
    let mut out = Vec::new();
    let mut frame = None;
    let mut rest = body;
    while let Some((&pid, after)) = rest.split_first() {
        let Some(def) = pid_def(pid) else {
            // Without its length an unknown PID cannot be split from what follows,
            // so everything after it is kept raw under that PID.
            out.push(Reading {
                pid,
                name: UNKNOWN_PID_NAME,
                value: Value::Raw(after.to_vec()),
            });
            break;
        };
        let mut after = after;
        if frame_bytes {
            let (&f, a) = after.split_first().ok_or(ObdError::Short {
                pid,
                need: def.len + 1,
                got: 0,
            })?;
            frame = Some(f);
            after = a;
        }
        if after.len() < def.len {
            return Err(ObdError::Short {
                pid,
                need: def.len,
                got: after.len(),
            });
        }
        out.push(Reading {
            pid,
            name: def.name,
            value: decode_scaled(def, &after[..def.len]),
        });
        rest = &after[def.len..];
    }
    Ok((frame, out))
}

/// DTCs from the bytes after a 43/47/4A service id.
///
/// On CAN the first byte counts the codes, so the body has odd length; the legacy
/// protocols (and some emulators) send pairs only, padded with `00 00`, so the body
/// has even length. A count that disagrees with the pairs present is an error.
pub fn decode_dtc_list(body: &[u8]) -> Result<Vec<Dtc>, ObdError> {
    let pairs = if body.len() % 2 == 1 {
        let said = usize::from(body[0]);
        let held = (body.len() - 1) / 2;
        if said > held {
            return Err(ObdError::DtcCount { said, held });
        }
        &body[1..1 + said * 2]
    } else {
        body
    };
    Ok(pairs
        .chunks_exact(2)
        .map(|p| Dtc::from_bytes(p[0], p[1]))
        .filter(|d| d.0 != 0)
        .collect())
}

fn printable(bytes: &[u8]) -> Result<String, ObdError> {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| *b != 0).map_or(start, |e| e + 1);
    let t = &bytes[start..end];
    if !t.iter().all(|b| b.is_ascii_graphic()) {
        return Err(ObdError::BadVin);
    }
    Ok(String::from_utf8_lossy(t).into_owned())
}

fn decode_mode09(body: &[u8]) -> Result<Response, ObdError> {
    let (&info, rest) = body.split_first().ok_or(ObdError::Empty)?;
    match info {
        0x00 | 0x20 | 0x40 => Ok(Response::SupportedInfo(bitmap_pids(info, rest))),
        0x01 | 0x03 | 0x05 | 0x07 | 0x09 => Ok(Response::InfoCount {
            info,
            count: rest.first().copied().unwrap_or(0),
        }),
        0x02 => {
            // CAN puts a data-item count before the 17 characters; legacy padding
            // puts NULs there instead. Either way the VIN is the last 17 bytes.
            let vin = if rest.len() >= 17 {
                &rest[rest.len() - 17..]
            } else {
                rest
            };
            printable(vin)
        }
        .map(Response::Vin),
        0x04 => {
            let items = if rest.len() % 16 == 1 {
                &rest[1..]
            } else {
                rest
            };
            items
                .chunks(16)
                .map(printable)
                .collect::<Result<Vec<_>, _>>()
                .map(|ids| {
                    Response::CalibrationIds(ids.into_iter().filter(|s| !s.is_empty()).collect())
                })
        }
        0x06 => {
            let items = if rest.len() % 4 == 1 {
                &rest[1..]
            } else {
                rest
            };
            Ok(Response::Cvns(
                items.chunks_exact(4).map(hex::encode_upper).collect(),
            ))
        }
        other => Err(ObdError::UnknownInfoType(other)),
    }
}

/// Decodes one assembled response payload, starting with its service id.
pub fn decode_response(payload: &[u8]) -> Result<Response, ObdError> {
    let (&sid, body) = payload.split_first().ok_or(ObdError::Empty)?;
    match sid {
        0x41 => split_pids(body, false).map(|(_, r)| Response::Current(r)),
        0x42 => split_pids(body, true).map(|(frame, readings)| Response::FreezeFrame {
            frame: frame.unwrap_or(0),
            readings,
        }),
        0x43 | 0x47 | 0x4A => Ok(Response::Dtcs {
            mode: sid - RESPONSE_BIT,
            codes: decode_dtc_list(body)?,
        }),
        0x49 => decode_mode09(body),
        NEGATIVE_RESPONSE if body.len() >= 2 => Ok(Response::Negative {
            service: body[0],
            code: body[1],
        }),
        other => Err(ObdError::UnknownService(other)),
    }
}

/// PIDs a vehicle (one ECU, or all ECUs merged) announced as supported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SupportedPids {
    pids: BTreeSet<u8>,
}

impl SupportedPids {
    /// Adds a bitmap answered for `base`; returns true when it announces the next
    /// bitmap (`base + 0x20`), so discovery should ask for that too.
    pub fn add_bitmap(&mut self, base: u8, bitmap: &[u8]) -> bool {
        let pids = bitmap_pids(base, bitmap);
        let next = base.checked_add(SUPPORTED_PID_STEP);
        let more = next.is_some_and(|n| pids.contains(&n));
        self.pids.extend(pids);
        more
    }

    /// Merges the bitmaps found in a mode 01 answer; returns the next bitmap PIDs
    /// it announces.
    pub fn add_response(&mut self, readings: &[Reading]) -> Vec<u8> {
        let mut next = Vec::new();
        for r in readings {
            if let Value::Supported(pids) = &r.value {
                self.pids.extend(pids.iter().copied());
                if let Some(n) = r.pid.checked_add(SUPPORTED_PID_STEP) {
                    if pids.contains(&n) {
                        next.push(n);
                    }
                }
            }
        }
        next
    }

    pub fn contains(&self, pid: u8) -> bool {
        self.pids.contains(&pid)
    }

    pub fn is_empty(&self) -> bool {
        self.pids.is_empty()
    }

    /// Supported PIDs that are data, not further bitmaps.
    pub fn data_pids(&self) -> impl Iterator<Item = u8> + '_ {
        self.pids
            .iter()
            .copied()
            .filter(|p| p % SUPPORTED_PID_STEP != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(payload: &[u8]) -> Reading {
        match decode_response(payload).expect("decodes") {
            Response::Current(mut r) => {
                assert_eq!(r.len(), 1);
                r.remove(0)
            }
            other => panic!("not mode 01: {other:?}"),
        }
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-9, "{a} != {b}");
    }

    #[test]
    fn core_pids_scale_like_python_obd() {
        close(
            one(&[0x41, 0x0C, 0x1A, 0xF8]).value.as_f64().unwrap(),
            1726.0,
        );
        close(one(&[0x41, 0x0D, 0x37]).value.as_f64().unwrap(), 55.0);
        close(one(&[0x41, 0x05, 0x5F]).value.as_f64().unwrap(), 55.0);
        close(one(&[0x41, 0x10, 0x01, 0x2C]).value.as_f64().unwrap(), 3.0);
        close(one(&[0x41, 0x11, 0xFF]).value.as_f64().unwrap(), 100.0);
        close(
            one(&[0x41, 0x2F, 0x80]).value.as_f64().unwrap(),
            128.0 * 100.0 / 255.0,
        );
        close(one(&[0x41, 0x06, 0x78]).value.as_f64().unwrap(), -6.25);
        close(one(&[0x41, 0x0E, 0x00]).value.as_f64().unwrap(), -64.0);
        close(
            one(&[0x41, 0x3C, 0x0F, 0xA0]).value.as_f64().unwrap(),
            360.0,
        );
        close(one(&[0x41, 0x42, 0x39, 0x08]).value.as_f64().unwrap(), 14.6);
        close(one(&[0x41, 0x5D, 0x69, 0x00]).value.as_f64().unwrap(), 0.0);
        close(one(&[0x41, 0x5E, 0x00, 0x64]).value.as_f64().unwrap(), 5.0);
        close(
            one(&[0x41, 0x32, 0xFF, 0xFC]).value.as_f64().unwrap(),
            -65.0,
        );
        close(
            one(&[0x41, 0x34, 0, 0, 0x80, 0x80]).value.as_f64().unwrap(),
            0.5,
        );
        close(
            one(&[0x41, 0x24, 0, 0, 0xFF, 0xFF]).value.as_f64().unwrap(),
            8.0,
        );
        close(
            one(&[0x41, 0xA6, 0x00, 0x01, 0xE2, 0x40])
                .value
                .as_f64()
                .unwrap(),
            12345.6,
        );
        assert_eq!(one(&[0x41, 0x0C, 0, 0]).value.unit(), Some("rpm"));
    }

    #[test]
    fn every_table_pid_decodes_from_a_full_length_payload() {
        for d in MODE01 {
            let mut payload = vec![0x41, d.pid];
            payload.extend(std::iter::repeat_n(0x11, d.len));
            let r = one(&payload);
            assert_eq!(r.pid, d.pid);
            assert_eq!(r.name, d.name);
        }
        let pids: Vec<u8> = MODE01.iter().map(|d| d.pid).collect();
        for pid in 0x00..=0x5F {
            assert!(pids.contains(&pid), "PID {pid:02X} missing");
        }
        assert!(pids.windows(2).all(|w| w[0] < w[1]), "table in PID order");
    }

    #[test]
    fn status_reports_mil_count_and_spark_monitors() {
        let r = one(&[0x41, 0x01, 0x83, 0x07, 0x65, 0x04]);
        let Value::Status(s) = r.value else {
            panic!("not a status")
        };
        assert!(s.mil);
        assert_eq!(s.dtc_count, 3);
        assert_eq!(s.ignition, "spark");
        let cat = s
            .tests
            .iter()
            .find(|t| t.name == "CATALYST_MONITORING")
            .unwrap();
        assert!(cat.available && cat.complete);
        let evap = s
            .tests
            .iter()
            .find(|t| t.name == "EVAPORATIVE_SYSTEM_MONITORING")
            .unwrap();
        assert!(evap.available && !evap.complete);
        let misfire = s
            .tests
            .iter()
            .find(|t| t.name == "MISFIRE_MONITORING")
            .unwrap();
        assert!(misfire.available && misfire.complete);
    }

    #[test]
    fn multi_pid_answer_splits_by_pid_length() {
        let Response::Current(r) =
            decode_response(&[0x41, 0x0C, 0x0F, 0xA0, 0x0D, 0x32, 0x05, 0x7B]).unwrap()
        else {
            panic!()
        };
        let names: Vec<_> = r.iter().map(|r| r.name).collect();
        assert_eq!(names, ["RPM", "SPEED", "COOLANT_TEMP"]);
        close(r[0].value.as_f64().unwrap(), 1000.0);
        close(r[2].value.as_f64().unwrap(), 83.0);
    }

    #[test]
    fn unknown_pid_keeps_the_rest_of_the_answer_raw() {
        let Response::Current(r) = decode_response(&[0x41, 0x0D, 0x32, 0xE7, 0x01, 0x02]).unwrap()
        else {
            panic!()
        };
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].name, UNKNOWN_PID_NAME);
        assert_eq!(r[1].value, Value::Raw(vec![0x01, 0x02]));
        assert!(matches!(
            decode_response(&[0x41, 0x0C, 0x0F]),
            Err(ObdError::Short { pid: 0x0C, .. })
        ));
    }

    #[test]
    fn dtcs_format_with_system_letter() {
        assert_eq!(Dtc::from_bytes(0x01, 0x33).to_string(), "P0133");
        assert_eq!(Dtc::from_bytes(0x41, 0x23).to_string(), "C0123");
        assert_eq!(Dtc::from_bytes(0x92, 0x34).to_string(), "B1234");
        assert_eq!(Dtc::from_bytes(0xC1, 0x96).to_string(), "U0196");
        for s in ["P0133", "C0123", "B1234", "U3FFF"] {
            assert_eq!(s.parse::<Dtc>().unwrap().to_string(), s);
        }
        assert!("X0133".parse::<Dtc>().is_err());
        assert!("P4133".parse::<Dtc>().is_err());
    }

    #[test]
    fn dtc_list_with_count_byte_and_without() {
        let with = decode_response(&[0x43, 0x02, 0x01, 0x33, 0xC1, 0x96]).unwrap();
        let without = decode_response(&[0x43, 0x01, 0x33, 0xC1, 0x96, 0x00, 0x00]).unwrap();
        let want = vec![Dtc(0x0133), Dtc(0xC196)];
        assert_eq!(
            with,
            Response::Dtcs {
                mode: 3,
                codes: want.clone()
            }
        );
        assert_eq!(
            without,
            Response::Dtcs {
                mode: 3,
                codes: want
            }
        );
        assert_eq!(
            decode_response(&[0x43, 0x00]).unwrap(),
            Response::Dtcs {
                mode: 3,
                codes: vec![]
            }
        );
        assert_eq!(
            decode_response(&[0x47, 0x05, 0x01, 0x33]),
            Err(ObdError::DtcCount { said: 5, held: 1 })
        );
    }

    #[test]
    fn vin_and_calibration_ids_decode() {
        let mut p = vec![0x49, 0x02, 0x01];
        p.extend_from_slice(b"TMBJP7NX5NY084923");
        assert_eq!(
            decode_response(&p).unwrap(),
            Response::Vin("TMBJP7NX5NY084923".into())
        );
        let mut cal = vec![0x49, 0x04, 0x02];
        cal.extend_from_slice(b"312J6000\0\0\0\0\0\0\0\0\0A4701000\0\0\0\0\0\0\0");
        assert_eq!(
            decode_response(&cal).unwrap(),
            Response::CalibrationIds(vec!["312J6000".into(), "A4701000".into()])
        );
        assert_eq!(
            decode_response(&[0x49, 0x02, 0x01, 0x41, 0x07]),
            Err(ObdError::BadVin)
        );
    }

    #[test]
    fn freeze_frame_carries_frame_number() {
        let r = decode_response(&[0x42, 0x0C, 0x00, 0x0F, 0xA0, 0x02, 0x00, 0x01, 0x33]).unwrap();
        let Response::FreezeFrame { frame, readings } = r else {
            panic!()
        };
        assert_eq!(frame, 0);
        close(readings[0].value.as_f64().unwrap(), 1000.0);
        assert_eq!(readings[1].value, Value::Dtc(Some(Dtc(0x0133))));
    }

    #[test]
    fn supported_bitmaps_chain_to_the_next_range() {
        let mut s = SupportedPids::default();
        assert!(s.add_bitmap(0x00, &[0xBE, 0x3F, 0xA8, 0x13]));
        assert!(s.contains(0x0C) && s.contains(0x0D) && s.contains(0x20));
        assert!(!s.contains(0x02));
        assert!(!s.add_bitmap(0x20, &[0x90, 0x1F, 0xF0, 0x14]));
        assert!(s.contains(0x2F));
        assert!(!s.data_pids().any(|p| p == 0x20));
    }

    #[test]
    fn pid_arguments_parse_by_hex_or_name() {
        assert_eq!(parse_pid("0C"), Some(0x0C));
        assert_eq!(parse_pid("0x0d"), Some(0x0D));
        assert_eq!(parse_pid("rpm"), Some(0x0C));
        assert_eq!(parse_pid("FUEL_LEVEL"), Some(0x2F));
        assert_eq!(parse_pid("nope"), None);
    }

    #[test]
    fn negative_response_is_reported() {
        assert_eq!(
            decode_response(&[0x7F, 0x01, 0x12]).unwrap(),
            Response::Negative {
                service: 1,
                code: 0x12
            }
        );
    }
}
