//! OpenAPI schemas of the types whose JSON form is written by hand (a text such as `"4G"` or
//! `"exit_code: 3"` rather than a derived object), so the API description says what the
//! wire carries. Everything else derives `utoipa::ToSchema` beside its `Serialize`.

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::reason::{Reason, Signal};
use crate::resources::Cpus;
use crate::retry::Backoff;
use crate::units::{HumanDuration, Size};

fn text(description: &str, example: &str) -> Schema {
    Schema::Object(
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .description(Some(description))
            .examples([serde_json::json!(example)])
            .build(),
    )
}

/// Text, or a number (`kind`): what a field that reads `"4G"` or `4294967296` takes.
fn text_or_number(description: &str, example: &str, kind: Type) -> Schema {
    Schema::OneOf(
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(SchemaType::Type(Type::String)))
            .item(
                ObjectBuilder::new()
                    .schema_type(SchemaType::Type(kind))
                    .minimum(Some(0.0)),
            )
            .description(Some(description))
            .examples([serde_json::json!(example)])
            .build(),
    )
}

macro_rules! schema {
    ($ty:ty, $schema:expr) => {
        impl PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                RefOr::T($schema)
            }
        }
        impl ToSchema for $ty {}
    };
}

schema!(
    Size,
    text_or_number(
        "A size: bytes, or text with a unit (`512M`, `4G`, `1.5GiB`). Answers give text.",
        "4G",
        Type::Integer
    )
);
schema!(
    HumanDuration,
    text_or_number(
        "A duration: seconds, or text (`90s`, `30m`, `12h`, `2d`). Answers give text.",
        "30m",
        Type::Number
    )
);
schema!(
    Cpus,
    text_or_number(
        "A CPU count, possibly fractional (`0.5`, `2`). Answers give a number.",
        "1.5",
        Type::Number
    )
);
schema!(
    Reason,
    text(
        "Why an attempt ended or a job waits: a kind, with a detail after `: ` for some (`exit_code: 3`, `signal: SIGKILL`, `memory_limit`, `timeout`, `cancelled_by_user`, `spawn_failed: …`).",
        "exit_code: 3"
    )
);
schema!(
    Signal,
    text(
        "A signal: a name (`USR1`, `SIGTERM`) or a number.",
        "SIGUSR1"
    )
);
schema!(
    Backoff,
    text(
        "Backoff between attempts: a fixed duration (`30s`), or `MIN..MAX` to double from MIN up to MAX (`1s..5m`).",
        "1s..5m"
    )
);
