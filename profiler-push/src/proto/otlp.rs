//! OTLP profiles (`v1development`), in the numbering of opentelemetry-proto 1.10+.

/// `collector.profiles.v1development.ExportProfilesServiceRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportProfilesServiceRequest {
    /// Profiles by resource.
    #[prost(message, repeated, tag = "1")]
    pub resource_profiles: Vec<ResourceProfiles>,
    /// The tables every profile of the request indexes into.
    #[prost(message, optional, tag = "2")]
    pub dictionary: Option<ProfilesDictionary>,
}

/// `collector.profiles.v1development.ExportProfilesServiceResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportProfilesServiceResponse {
    /// Set when part of the request was rejected.
    #[prost(message, optional, tag = "1")]
    pub partial_success: Option<ExportProfilesPartialSuccess>,
}

/// `collector.profiles.v1development.ExportProfilesPartialSuccess`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportProfilesPartialSuccess {
    /// Profiles the backend dropped.
    #[prost(int64, tag = "1")]
    pub rejected_profiles: i64,
    /// Why.
    #[prost(string, tag = "2")]
    pub error_message: String,
}

/// `profiles.v1development.ProfilesDictionary`: tables shared by a request's profiles;
/// entry 0 of each is the zero value.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProfilesDictionary {
    /// Binaries.
    #[prost(message, repeated, tag = "1")]
    pub mapping_table: Vec<Mapping>,
    /// Code locations.
    #[prost(message, repeated, tag = "2")]
    pub location_table: Vec<Location>,
    /// Functions.
    #[prost(message, repeated, tag = "3")]
    pub function_table: Vec<Function>,
    /// Trace links (only the zero entry here).
    #[prost(message, repeated, tag = "4")]
    pub link_table: Vec<Link>,
    /// Strings.
    #[prost(string, repeated, tag = "5")]
    pub string_table: Vec<String>,
    /// Attributes.
    #[prost(message, repeated, tag = "6")]
    pub attribute_table: Vec<KeyValueAndUnit>,
    /// Stacks.
    #[prost(message, repeated, tag = "7")]
    pub stack_table: Vec<Stack>,
}

/// `profiles.v1development.ResourceProfiles`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResourceProfiles {
    /// The resource (`service.name`, `host.name`).
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    /// Profiles by instrumentation scope.
    #[prost(message, repeated, tag = "2")]
    pub scope_profiles: Vec<ScopeProfiles>,
    /// Schema URL of the resource.
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

/// `profiles.v1development.ScopeProfiles`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ScopeProfiles {
    /// Who produced the profiles.
    #[prost(message, optional, tag = "1")]
    pub scope: Option<InstrumentationScope>,
    /// The profiles.
    #[prost(message, repeated, tag = "2")]
    pub profiles: Vec<Profile>,
    /// Schema URL of the scope.
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

/// `profiles.v1development.Profile`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Profile {
    /// What the samples' values count.
    #[prost(message, optional, tag = "1")]
    pub sample_type: Option<ValueType>,
    /// The samples.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    /// Start, nanoseconds since the Unix epoch.
    #[prost(fixed64, tag = "3")]
    pub time_unix_nano: u64,
    /// Length, nanoseconds.
    #[prost(uint64, tag = "4")]
    pub duration_nano: u64,
    /// What one sample stands for.
    #[prost(message, optional, tag = "5")]
    pub period_type: Option<ValueType>,
    /// How much of `period_type` one sample stands for.
    #[prost(int64, tag = "6")]
    pub period: i64,
    /// A unique 16-byte id.
    #[prost(bytes = "vec", tag = "7")]
    pub profile_id: Vec<u8>,
    /// Attributes dropped.
    #[prost(uint32, tag = "8")]
    pub dropped_attributes_count: u32,
    /// Format of `original_payload`.
    #[prost(string, tag = "9")]
    pub original_payload_format: String,
    /// The profile in its original format (unused).
    #[prost(bytes = "vec", tag = "10")]
    pub original_payload: Vec<u8>,
    /// Profile-wide attributes, as indices into the attribute table.
    #[prost(int32, repeated, tag = "11")]
    pub attribute_indices: Vec<i32>,
}

/// `profiles.v1development.ValueType`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ValueType {
    /// The type, a string table index (`samples`, `cpu`).
    #[prost(int32, tag = "1")]
    pub type_strindex: i32,
    /// The unit, a string table index (`count`, `nanoseconds`).
    #[prost(int32, tag = "2")]
    pub unit_strindex: i32,
}

/// `profiles.v1development.Sample`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Sample {
    /// The stack, an index into the stack table.
    #[prost(int32, tag = "1")]
    pub stack_index: i32,
    /// Attributes, indices into the attribute table.
    #[prost(int32, repeated, tag = "2")]
    pub attribute_indices: Vec<i32>,
    /// A trace link, an index into the link table (0: none).
    #[prost(int32, tag = "3")]
    pub link_index: i32,
    /// The values, one per sample type.
    #[prost(int64, repeated, tag = "4")]
    pub values: Vec<i64>,
    /// Timestamps of the samples (unused: windows are aggregated).
    #[prost(fixed64, repeated, tag = "5")]
    pub timestamps_unix_nano: Vec<u64>,
}

/// `profiles.v1development.Mapping`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Mapping {
    /// Start of the mapped range.
    #[prost(uint64, tag = "1")]
    pub memory_start: u64,
    /// End of the mapped range.
    #[prost(uint64, tag = "2")]
    pub memory_limit: u64,
    /// File offset of `memory_start`.
    #[prost(uint64, tag = "3")]
    pub file_offset: u64,
    /// The binary's path, a string table index.
    #[prost(int32, tag = "4")]
    pub filename_strindex: i32,
    /// Attributes (the build-id), indices into the attribute table.
    #[prost(int32, repeated, tag = "5")]
    pub attribute_indices: Vec<i32>,
}

/// `profiles.v1development.Stack`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Stack {
    /// Locations, indices into the location table, leaf first.
    #[prost(int32, repeated, tag = "1")]
    pub location_indices: Vec<i32>,
}

/// `profiles.v1development.Location`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Location {
    /// The mapping, an index into the mapping table (0: none).
    #[prost(int32, tag = "1")]
    pub mapping_index: i32,
    /// The address (a file offset for file-backed code, see the crate docs).
    #[prost(uint64, tag = "2")]
    pub address: u64,
    /// The functions at this address, innermost (inlined) first, the real frame last.
    #[prost(message, repeated, tag = "3")]
    pub lines: Vec<Line>,
    /// Attributes, indices into the attribute table.
    #[prost(int32, repeated, tag = "4")]
    pub attribute_indices: Vec<i32>,
}

/// `profiles.v1development.Line`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Line {
    /// The function, an index into the function table.
    #[prost(int32, tag = "1")]
    pub function_index: i32,
    /// Source line (0: unknown).
    #[prost(int64, tag = "2")]
    pub line: i64,
    /// Source column (0: unknown).
    #[prost(int64, tag = "3")]
    pub column: i64,
}

/// `profiles.v1development.Function`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Function {
    /// The name, a string table index.
    #[prost(int32, tag = "1")]
    pub name_strindex: i32,
    /// The mangled name, a string table index.
    #[prost(int32, tag = "2")]
    pub system_name_strindex: i32,
    /// The source file, a string table index.
    #[prost(int32, tag = "3")]
    pub filename_strindex: i32,
    /// The function's first line.
    #[prost(int64, tag = "4")]
    pub start_line: i64,
}

/// `profiles.v1development.Link`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Link {
    /// Trace id.
    #[prost(bytes = "vec", tag = "1")]
    pub trace_id: Vec<u8>,
    /// Span id.
    #[prost(bytes = "vec", tag = "2")]
    pub span_id: Vec<u8>,
}

/// `profiles.v1development.KeyValueAndUnit`: an entry of the attribute table.
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValueAndUnit {
    /// The key, a string table index.
    #[prost(int32, tag = "1")]
    pub key_strindex: i32,
    /// The value.
    #[prost(message, optional, tag = "2")]
    pub value: Option<AnyValue>,
    /// The unit, a string table index (0: none).
    #[prost(int32, tag = "3")]
    pub unit_strindex: i32,
}

/// `resource.v1.Resource`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Resource {
    /// The resource's attributes.
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<KeyValue>,
    /// Attributes dropped.
    #[prost(uint32, tag = "2")]
    pub dropped_attributes_count: u32,
}

/// `common.v1.InstrumentationScope`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct InstrumentationScope {
    /// The producer's name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its version.
    #[prost(string, tag = "2")]
    pub version: String,
}

/// `common.v1.KeyValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    /// The key.
    #[prost(string, tag = "1")]
    pub key: String,
    /// The value.
    #[prost(message, optional, tag = "2")]
    pub value: Option<AnyValue>,
}

/// `common.v1.AnyValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AnyValue {
    /// The value.
    #[prost(oneof = "any_value::Value", tags = "1, 3")]
    pub value: Option<any_value::Value>,
}

/// The value of an [`AnyValue`].
pub mod any_value {
    /// The kinds of value Ember sends.
    #[derive(Clone, PartialEq, Eq, prost::Oneof)]
    pub enum Value {
        /// A string.
        #[prost(string, tag = "1")]
        StringValue(String),
        /// An integer.
        #[prost(int64, tag = "3")]
        IntValue(i64),
    }
}

impl AnyValue {
    /// A string value.
    #[must_use]
    pub fn string(s: impl Into<String>) -> Self {
        AnyValue {
            value: Some(any_value::Value::StringValue(s.into())),
        }
    }

    /// An integer value.
    #[must_use]
    pub fn int(v: i64) -> Self {
        AnyValue {
            value: Some(any_value::Value::IntValue(v)),
        }
    }
}
