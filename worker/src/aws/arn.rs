//! Function and layer names as the Lambda API spells them: a name, a partial ARN
//! (`123456789012:function:name`) or a full ARN (`arn:aws:lambda:<region>:<account>:function:name`),
//! the function forms optionally with a qualifier (`:$LATEST`, the only version there is).

use super::errors::AwsError;
use crate::lambda_config::LayerRef;
use crate::name::LambdaName;

/// The region and account every ARN of this platform carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arns {
    pub region: String,
    pub account_id: String,
}

/// The one version of a function.
pub const LATEST: &str = "$LATEST";

impl Arns {
    pub fn function(&self, name: &LambdaName) -> String {
        format!(
            "arn:aws:lambda:{}:{}:function:{name}",
            self.region, self.account_id
        )
    }

    pub fn layer(&self, name: &LambdaName) -> String {
        format!(
            "arn:aws:lambda:{}:{}:layer:{name}",
            self.region, self.account_id
        )
    }

    pub fn layer_version(&self, name: &LambdaName, version: u64) -> String {
        format!("{}:{version}", self.layer(name))
    }

    /// The role every function reports: this platform runs no IAM, so the `Role` given at
    /// creation is checked for its shape and not kept.
    pub fn role(&self) -> String {
        format!("arn:aws:iam::{}:role/lambdaworker", self.account_id)
    }

    /// Checks the region and account of an ARN's `arn:aws:lambda:<region>:<account>:` prefix.
    fn check_scope(&self, raw: &str, region: &str, account: &str) -> Result<(), AwsError> {
        if region != self.region || account != self.account_id {
            return Err(AwsError::invalid(format!(
                "{raw} is in region {region:?} and account {account:?}; this platform's are \
                 {:?} and {:?}",
                self.region, self.account_id
            )));
        }
        Ok(())
    }

    /// A `FunctionName` (name, partial or full ARN, maybe with `:$LATEST`) as the function's
    /// name. Another qualifier is a version or alias, which this platform has not:
    /// `ResourceNotFoundException` as AWS answers for one that does not exist.
    pub fn function_name(&self, raw: &str) -> Result<LambdaName, AwsError> {
        let (name, qualifier) = self.split_function(raw)?;
        let name = parse_name("FunctionName", raw, name)?;
        self.check_qualifier(&name, qualifier)?;
        Ok(name)
    }

    /// A `Qualifier` query parameter: `$LATEST` or nothing.
    pub fn check_qualifier(&self, name: &LambdaName, q: Option<&str>) -> Result<(), AwsError> {
        match q {
            None | Some(LATEST) => Ok(()),
            Some(q) => Err(AwsError::not_found(format!(
                "Function not found: {}:{q} (this platform keeps only {LATEST} of each function)",
                self.function(name)
            ))),
        }
    }

    /// `(name, qualifier)` of the three spellings.
    fn split_function<'a>(&self, raw: &'a str) -> Result<(&'a str, Option<&'a str>), AwsError> {
        let parts: Vec<&str> = raw.split(':').collect();
        let bad = || {
            AwsError::invalid(format!(
                "FunctionName {raw:?} is not a name, 123456789012:function:name or \
                 arn:aws:lambda:<region>:<account>:function:<name>"
            ))
        };
        match parts.as_slice() {
            [name] => Ok((name, None)),
            [name, q] => Ok((name, Some(q))),
            [account, "function", name] | [account, "function", name, _] => {
                if *account != self.account_id {
                    return Err(AwsError::invalid(format!(
                        "{raw} is in account {account:?}; this platform's is {:?}",
                        self.account_id
                    )));
                }
                Ok((name, parts.get(3).copied()))
            }
            ["arn", partition, "lambda", region, account, "function", name]
            | ["arn", partition, "lambda", region, account, "function", name, _] => {
                if !partition.starts_with("aws") {
                    return Err(bad());
                }
                self.check_scope(raw, region, account)?;
                Ok((name, parts.get(7).copied()))
            }
            _ => Err(bad()),
        }
    }

    /// A `Resource` of ListTags, TagResource, UntagResource: a function's full ARN without a
    /// qualifier (only functions are tagged here).
    pub fn tagged_function(&self, raw: &str) -> Result<LambdaName, AwsError> {
        let parts: Vec<&str> = raw.split(':').collect();
        match parts.as_slice() {
            ["arn", partition, "lambda", region, account, "function", name]
                if partition.starts_with("aws") =>
            {
                self.check_scope(raw, region, account)?;
                parse_name("Resource", raw, name)
            }
            _ => Err(AwsError::invalid(format!(
                "Resource {raw:?} is not a function ARN \
                 (arn:aws:lambda:<region>:<account>:function:<name>, without a qualifier)"
            ))),
        }
    }

    /// A `LayerName`: a name or `arn:aws:lambda:<region>:<account>:layer:<name>`.
    pub fn layer_name(&self, raw: &str) -> Result<LambdaName, AwsError> {
        let parts: Vec<&str> = raw.split(':').collect();
        let name = match parts.as_slice() {
            [name] => name,
            ["arn", partition, "lambda", region, account, "layer", name]
                if partition.starts_with("aws") =>
            {
                self.check_scope(raw, region, account)?;
                name
            }
            _ => {
                return Err(AwsError::invalid(format!(
                "LayerName {raw:?} is not a name or arn:aws:lambda:<region>:<account>:layer:<name>"
            )))
            }
        };
        parse_name("LayerName", raw, name)
    }

    /// A layer version ARN (`arn:aws:lambda:<region>:<account>:layer:<name>:<N>`), or this
    /// platform's own `name` / `name:N`, as a layer reference.
    pub fn layer_ref(&self, raw: &str) -> Result<LayerRef, AwsError> {
        let parts: Vec<&str> = raw.split(':').collect();
        let spelled = match parts.as_slice() {
            ["arn", partition, "lambda", region, account, "layer", name, version]
                if partition.starts_with("aws") =>
            {
                self.check_scope(raw, region, account)?;
                format!("{name}:{version}")
            }
            [_] | [_, _] => raw.to_owned(),
            _ => {
                return Err(AwsError::invalid(format!(
                    "Layers: {raw:?} is not a layer version ARN \
                     (arn:aws:lambda:<region>:<account>:layer:<name>:<version>)"
                )))
            }
        };
        LayerRef::parse(&spelled).map_err(|m| AwsError::invalid(format!("Layers: {raw}: {m}")))
    }
}

fn parse_name(member: &str, raw: &str, name: &str) -> Result<LambdaName, AwsError> {
    LambdaName::parse(name).map_err(|reason| {
        AwsError::invalid(format!(
            "{member} {raw:?}: {reason} (letters, digits, '_' and '-', at most 64)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arns() -> Arns {
        Arns {
            region: "us-east-1".into(),
            account_id: "123456789012".into(),
        }
    }

    #[test]
    fn the_three_spellings_of_a_function_with_latest() {
        let a = arns();
        for raw in [
            "hello",
            "hello:$LATEST",
            "123456789012:function:hello",
            "123456789012:function:hello:$LATEST",
            "arn:aws:lambda:us-east-1:123456789012:function:hello",
            "arn:aws:lambda:us-east-1:123456789012:function:hello:$LATEST",
        ] {
            assert_eq!(a.function_name(raw).unwrap().as_str(), "hello", "{raw}");
        }
        assert_eq!(
            a.function(&LambdaName::parse("hello").unwrap()),
            "arn:aws:lambda:us-east-1:123456789012:function:hello"
        );
    }

    #[test]
    fn other_qualifiers_accounts_and_names_are_refused() {
        let a = arns();
        for (raw, code, needle) in [
            ("hello:3", "ResourceNotFoundException", "function:hello:3"),
            ("hello:prod", "ResourceNotFoundException", "only $LATEST"),
            (
                "arn:aws:lambda:us-east-1:123456789012:function:hello:1",
                "ResourceNotFoundException",
                "hello:1",
            ),
            (
                "999999999999:function:hello",
                "InvalidParameterValueException",
                "account \"999999999999\"",
            ),
            (
                "arn:aws:lambda:eu-west-1:123456789012:function:hello",
                "InvalidParameterValueException",
                "region \"eu-west-1\"",
            ),
            (
                "arn:aws:s3:us-east-1:123456789012:function:hello",
                "InvalidParameterValueException",
                "is not a name",
            ),
            ("a:b:c:d", "InvalidParameterValueException", "is not a name"),
            (
                "he.llo",
                "InvalidParameterValueException",
                "FunctionName \"he.llo\"",
            ),
            ("", "InvalidParameterValueException", "empty"),
        ] {
            let e = a.function_name(raw).unwrap_err();
            assert_eq!(e.code, code, "{raw}: {e}");
            assert!(e.message.contains(needle), "{raw}: {e}");
        }
    }

    #[test]
    fn tag_resources_are_function_arns() {
        let a = arns();
        let arn = "arn:aws:lambda:us-east-1:123456789012:function:hello";
        assert_eq!(a.tagged_function(arn).unwrap().as_str(), "hello");
        for raw in [
            "hello",
            "arn:aws:lambda:us-east-1:123456789012:function:hello:$LATEST",
            "arn:aws:lambda:us-east-1:123456789012:layer:l",
        ] {
            assert!(a.tagged_function(raw).is_err(), "{raw}");
        }
    }

    #[test]
    fn layer_names_and_version_arns() {
        let a = arns();
        assert_eq!(a.layer_name("common").unwrap().as_str(), "common");
        assert_eq!(
            a.layer_name("arn:aws:lambda:us-east-1:123456789012:layer:common")
                .unwrap()
                .as_str(),
            "common"
        );
        assert!(a
            .layer_name("arn:aws:lambda:us-east-1:1:layer:common")
            .is_err());
        let r = a
            .layer_ref("arn:aws:lambda:us-east-1:123456789012:layer:common:2")
            .unwrap();
        assert_eq!((r.name.as_str(), r.version), ("common", Some(2)));
        assert_eq!(a.layer_ref("common").unwrap().version, None);
        assert_eq!(a.layer_ref("common:3").unwrap().version, Some(3));
        for raw in [
            "arn:aws:lambda:us-east-1:123456789012:layer:common:0",
            "arn:aws:lambda:us-east-1:123456789012:layer:common:x",
            "arn:aws:lambda:us-east-1:123456789012:layer:common",
            "arn:aws:lambda:us-east-2:123456789012:layer:common:1",
        ] {
            let e = a.layer_ref(raw).unwrap_err();
            assert!(
                e.message.contains("Layers") || e.message.contains("region"),
                "{raw}: {e}"
            );
        }
        assert_eq!(
            a.layer_version(&LambdaName::parse("common").unwrap(), 2),
            "arn:aws:lambda:us-east-1:123456789012:layer:common:2"
        );
    }
}
