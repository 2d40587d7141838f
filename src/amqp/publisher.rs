//! Publishing with publisher confirms: a message counts as sent only once the broker has
//! confirmed it, and a mandatory message that no queue took comes back as [`Published::Returned`].

use std::time::Duration;

use lapin::{
    BasicProperties, Channel, Confirmation, Connection,
    options::{BasicPublishOptions, ConfirmSelectOptions},
};

/// What the broker did with a confirmed publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Published {
    Confirmed,
    /// Mandatory and unroutable (reply code 312): no queue by that name.
    Returned,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum PublishError {
    #[error("no broker confirm within {0:?}")]
    Timeout(Duration),
    #[error("the broker refused the message (nack)")]
    Nacked,
    #[error("no queue is bound to take the message (unroutable)")]
    Unroutable,
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
}

/// A confirm-mode channel shared by every task of one connection (lapin channels are
/// thread-safe; confirms are matched to publishes by delivery tag inside lapin).
#[derive(Clone)]
pub(crate) struct Publisher {
    channel: Channel,
    timeout: Duration,
}

impl Publisher {
    pub(crate) async fn open(
        connection: &Connection,
        timeout: Duration,
    ) -> Result<Publisher, lapin::Error> {
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Publisher { channel, timeout })
    }

    /// Publishes and waits for the confirm, both bounded by the configured timeout.
    pub(crate) async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<Published, PublishError> {
        let options = BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        };
        let send_and_confirm = async {
            let confirm = self
                .channel
                .basic_publish(
                    exchange.into(),
                    routing_key.into(),
                    options,
                    body,
                    properties,
                )
                .await?;
            confirm.await
        };
        match tokio::time::timeout(self.timeout, send_and_confirm).await {
            Err(_) => Err(PublishError::Timeout(self.timeout)),
            Ok(Err(err)) => Err(err.into()),
            Ok(Ok(Confirmation::Ack(None))) => Ok(Published::Confirmed),
            Ok(Ok(Confirmation::Ack(Some(_)))) => Ok(Published::Returned),
            // Confirm mode is always on for this channel; NotRequested cannot happen, and a
            // nack means the broker did not take responsibility for the message.
            Ok(Ok(Confirmation::Nack(_) | Confirmation::NotRequested)) => Err(PublishError::Nacked),
        }
    }

    /// False once the channel is closed (by the broker after a channel error, or with the
    /// connection): every later publish on it would fail.
    pub(crate) fn is_open(&self) -> bool {
        self.channel.status().connected()
    }

    pub(crate) async fn close(&self) {
        super::close_within(self.channel.close(200, "shutdown".into())).await;
    }
}
