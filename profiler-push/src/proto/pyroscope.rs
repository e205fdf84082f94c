//! Grafana Pyroscope's push API: `push.v1.PusherService/Push` and the `types.v1` label pair.

/// `types.v1.LabelPair`: one series label.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LabelPair {
    /// The label's name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `push.v1.PushRequest`: series of raw pprof profiles.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PushRequest {
    /// The series, each with its profiles.
    #[prost(message, repeated, tag = "1")]
    pub series: Vec<RawProfileSeries>,
}

/// `push.v1.RawProfileSeries`: profiles of one label set.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RawProfileSeries {
    /// The series labels (`__name__`, `service_name`, ...).
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<LabelPair>,
    /// The profiles.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<RawSample>,
}

/// `push.v1.RawSample`: one pprof profile.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct RawSample {
    /// The pprof profile (gzip-compressed `profile.proto`).
    #[prost(bytes = "vec", tag = "1")]
    pub raw_profile: Vec<u8>,
    /// A unique id of the profile (`ID` in the schema).
    #[prost(string, tag = "2")]
    pub id: String,
}

/// `push.v1.PushResponse` (empty).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PushResponse {}
