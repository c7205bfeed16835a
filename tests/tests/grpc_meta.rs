//! The standard gRPC side services on the client listener: health
//! (`grpc.health.v1`, in line with `/ready`) and server reflection (what
//! grpcurl uses to list and call the API without the .proto files).

use std::time::{Duration, Instant};

use futures::StreamExt;
use strata_tests::BrokerProc;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

async fn reflect(
    client: &mut ServerReflectionClient<tonic::transport::Channel>,
    req: MessageRequest,
) -> MessageResponse {
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(req),
    };
    let mut stream = client
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .expect("reflection call")
        .into_inner();
    stream
        .next()
        .await
        .expect("a response")
        .expect("reflection response")
        .message_response
        .expect("a message")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProc::start(&dir.path().join("node"), &[]).await;
    let channel = tonic::transport::Endpoint::from_shared(broker.endpoint())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");

    // Health: SERVING once the broker is ready, for the server and each API.
    let mut health = HealthClient::new(channel.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    for service in [
        "",
        "strata.v1.Broker",
        "strata.v1.Admin",
        "strata.v1.Groups",
    ] {
        loop {
            let r = health
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await;
            if r.as_ref()
                .is_ok_and(|r| r.get_ref().status == ServingStatus::Serving as i32)
            {
                break;
            }
            assert!(Instant::now() < deadline, "{service:?} not serving: {r:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .expect_err("an unknown service");
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    // Reflection lists the client API (not the brokers' peer API) ...
    let mut refl = ServerReflectionClient::new(channel);
    let MessageResponse::ListServicesResponse(list) =
        reflect(&mut refl, MessageRequest::ListServices(String::new())).await
    else {
        panic!("not a service list");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in [
        "strata.v1.Broker",
        "strata.v1.Admin",
        "strata.v1.Groups",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
    assert!(!names.iter().any(|n| n == "strata.v1.Peer"), "{names:?}");
    // ... and describes it: the file defining Admin has its methods.
    let MessageResponse::FileDescriptorResponse(files) = reflect(
        &mut refl,
        MessageRequest::FileContainingSymbol("strata.v1.Admin".into()),
    )
    .await
    else {
        panic!("not a file descriptor");
    };
    let bytes: Vec<u8> = files.file_descriptor_proto.concat();
    let text = String::from_utf8_lossy(&bytes);
    for method in ["CreateTopic", "DescribeTopic", "Produce", "Fetch"] {
        assert!(text.contains(method), "{method} not described");
    }
    assert!(!broker.log().contains("panicked"));
}
