//! InitProducerId (key 22): a producer id for an idempotent producer, or
//! the next epoch of the one it has (v3+, after a sequence it could not
//! recover). Transactional ids are refused until transactions exist.

use kafka_protocol::messages::ProducerId;
use kafka_protocol::messages::init_producer_id_request::InitProducerIdRequest;
use kafka_protocol::messages::init_producer_id_response::InitProducerIdResponse;

use super::dispatch::{Ctx, Reply, Response};
use super::errors::{self, Refused};

fn answer(error_code: i16, id: i64, epoch: i16) -> Reply {
    Reply::Now(
        Response::InitProducerId(
            InitProducerIdResponse::default()
                .with_error_code(error_code)
                .with_producer_id(ProducerId(id))
                .with_producer_epoch(epoch),
        ),
        error_code == errors::NONE,
    )
}

pub async fn handle(ctx: &Ctx, req: InitProducerIdRequest) -> Reply {
    if req.transactional_id.is_some() {
        return answer(errors::TRANSACTIONAL_ID_AUTHORIZATION_FAILED, -1, -1);
    }
    if let Err(e) = ctx.broker.authorize_idempotent_write(&ctx.who) {
        return answer(errors::code(&e, Refused::Cluster), -1, -1);
    }
    // Bumping: the same id with the next epoch, while epochs last.
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1 {
        return answer(errors::NONE, req.producer_id.0, req.producer_epoch + 1);
    }
    match ctx.broker.allocate_producer_id().await {
        Ok(id) => answer(errors::NONE, id, 0),
        Err(e) => answer(errors::code(&e, Refused::Cluster), -1, -1),
    }
}
