//! ACLs granted straight through Kafka's wire protocol (CreateAcls, DescribeAcls) over the
//! harness broker's `PLAINTEXT` listener, whose principal is a super user.
//!
//! [`Kafka::add_acls`] runs Kafka's own `AclCommand`, a JVM start per call and one resource
//! pattern at a time; a test that sets up a principal's whole permission set, once per case,
//! uses [`Kafka::grant`] instead: one request for every pattern, answered in milliseconds.

use std::collections::BTreeSet;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::{
    CreateAclsRequest, DescribeAclsRequest, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

use crate::kafka::{AclOperation, AclResource, Kafka};

/// CreateAcls and DescribeAcls v3, the flexible versions every Kafka 4 broker speaks.
const VERSION: i16 = 3;
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the broker's authorizer may take to apply ACLs the controller committed.
const APPLY_TIMEOUT: Duration = Duration::from_secs(30);

// Kafka's codes (`org.apache.kafka.common.resource.ResourceType`, `PatternType`,
// `acl.AclOperation`, `acl.AclPermissionType`).
const PATTERN_LITERAL: i8 = 3;
const PATTERN_PREFIXED: i8 = 4;
const PERMISSION_ALLOW: i8 = 3;
/// The name of the one cluster resource.
const CLUSTER_NAME: &str = "kafka-cluster";

/// One resource pattern and the operations allowed on it.
pub type Grant = (AclResource, Vec<AclOperation>);

impl AclResource {
    /// Kafka's resource type code, name and pattern type code.
    fn wire(&self) -> (i8, &str, i8) {
        match self {
            AclResource::Topic(name) => (2, name, PATTERN_LITERAL),
            AclResource::TopicPrefix(name) => (2, name, PATTERN_PREFIXED),
            AclResource::Group(name) => (3, name, PATTERN_LITERAL),
            AclResource::GroupPrefix(name) => (3, name, PATTERN_PREFIXED),
            AclResource::Cluster => (4, CLUSTER_NAME, PATTERN_LITERAL),
            AclResource::TransactionalId(name) => (5, name, PATTERN_LITERAL),
            AclResource::TransactionalIdPrefix(name) => (5, name, PATTERN_PREFIXED),
        }
    }
}

impl AclOperation {
    fn code(self) -> i8 {
        match self {
            AclOperation::All => 2,
            AclOperation::Read => 3,
            AclOperation::Write => 4,
            AclOperation::Create => 5,
            AclOperation::Delete => 6,
            AclOperation::Alter => 7,
            AclOperation::Describe => 8,
            AclOperation::ClusterAction => 9,
            AclOperation::DescribeConfigs => 10,
            AclOperation::AlterConfigs => 11,
            AclOperation::IdempotentWrite => 12,
        }
    }
}

impl Kafka {
    /// Allows `principal` (`User:alice`) every operation of `grants` on its resource pattern,
    /// from any host, in one CreateAcls request, and returns once the broker's authorizer
    /// lists them all (DescribeAcls answers from it).
    pub fn grant(&self, principal: &str, grants: &[Grant]) -> io::Result<()> {
        let mut connection = Wire::open(&self.bootstrap())?;
        let creations = grants
            .iter()
            .flat_map(|(resource, operations)| {
                let (resource_type, name, pattern) = resource.wire();
                operations.iter().map(move |operation| {
                    AclCreation::default()
                        .with_resource_type(resource_type)
                        .with_resource_name(StrBytes::from_string(name.to_owned()))
                        .with_resource_pattern_type(pattern)
                        .with_principal(StrBytes::from_string(principal.to_owned()))
                        .with_host(StrBytes::from_static_str("*"))
                        .with_operation(operation.code())
                        .with_permission_type(PERMISSION_ALLOW)
                })
            })
            .collect();
        let response = connection.call(&CreateAclsRequest::default().with_creations(creations))?;
        for result in &response.results {
            if result.error_code != 0 {
                return Err(io::Error::other(format!(
                    "CreateAcls for {principal} refused: error {} {:?}",
                    result.error_code, result.error_message
                )));
            }
        }
        let deadline = Instant::now() + APPLY_TIMEOUT;
        for (resource, operations) in grants {
            loop {
                let listed = connection.described(principal, resource)?;
                let missing: Vec<_> = operations
                    .iter()
                    .filter(|operation| !listed.contains(&operation.code()))
                    .collect();
                if missing.is_empty() {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(io::Error::other(format!(
                        "ACLs {missing:?} for {principal} on {resource:?} not applied within \
                         {APPLY_TIMEOUT:?}"
                    )));
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }
}

/// A blocking connection to the broker's `PLAINTEXT` listener.
struct Wire {
    stream: TcpStream,
    correlation_id: i32,
}

impl Wire {
    fn open(address: &str) -> io::Result<Wire> {
        let stream = TcpStream::connect(address)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(Wire {
            stream,
            correlation_id: 0,
        })
    }

    /// The operations `principal` is allowed on exactly `resource`'s pattern.
    fn described(&mut self, principal: &str, resource: &AclResource) -> io::Result<BTreeSet<i8>> {
        let (resource_type, name, pattern) = resource.wire();
        let request = DescribeAclsRequest::default()
            .with_resource_type_filter(resource_type)
            .with_resource_name_filter(Some(StrBytes::from_string(name.to_owned())))
            .with_pattern_type_filter(pattern)
            .with_principal_filter(Some(StrBytes::from_string(principal.to_owned())))
            .with_host_filter(None)
            // ANY
            .with_operation(1)
            .with_permission_type(PERMISSION_ALLOW);
        let response = self.call(&request)?;
        if response.error_code != 0 {
            return Err(io::Error::other(format!(
                "DescribeAcls refused: error {} {:?}",
                response.error_code, response.error_message
            )));
        }
        Ok(response
            .resources
            .iter()
            .flat_map(|r| r.acls.iter().map(|acl| acl.operation))
            .collect())
    }

    fn call<R: Request>(&mut self, request: &R) -> io::Result<R::Response> {
        let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(VERSION)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("outflow-tests-acl")));
        let mut frame = BytesMut::new();
        frame.extend_from_slice(&[0; 4]);
        header
            .encode(&mut frame, R::header_version(VERSION))
            .and_then(|()| request.encode(&mut frame, VERSION))
            .map_err(|e| invalid(format!("encoding: {e:#}")))?;
        let length = (frame.len() - 4) as i32;
        frame[..4].copy_from_slice(&length.to_be_bytes());
        self.stream.write_all(&frame)?;
        let mut length = [0u8; 4];
        self.stream.read_exact(&mut length)?;
        let mut body = vec![0u8; i32::from_be_bytes(length).max(0) as usize];
        self.stream.read_exact(&mut body)?;
        let mut body = Bytes::from(body);
        let header = ResponseHeader::decode(&mut body, R::Response::header_version(VERSION))
            .map_err(|e| invalid(format!("decoding the header: {e:#}")))?;
        if header.correlation_id != self.correlation_id {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "answer {} to request {}",
                    header.correlation_id, self.correlation_id
                ),
            ));
        }
        R::Response::decode(&mut body, VERSION).map_err(|e| invalid(format!("decoding: {e:#}")))
    }
}
