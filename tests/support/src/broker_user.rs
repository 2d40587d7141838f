//! A RabbitMQ user of a test's own ([`BrokerUser`]), for a test that must not connect as guest.

use crate::{TestEnv, amqp_url, rabbitmqctl, rabbitmqctl_command};

/// Permissions on every resource of the vhost: configure, write, read.
pub const ALL_PERMISSIONS: [&str; 3] = [".*", ".*", ".*"];

/// A broker user with permissions on one test's vhost, deleted when dropped.
pub struct BrokerUser {
    pub name: String,
    pub password: String,
    vhost: String,
}

impl BrokerUser {
    /// Adds the user `name` with `password` and `permissions` (configure, write and read
    /// patterns, as `rabbitmqctl set_permissions` takes them) on the vhost of `env`.
    pub fn add(env: &TestEnv, name: &str, password: &str, permissions: [&str; 3]) -> BrokerUser {
        // The guard first: the user is deleted even if setting its permissions fails.
        let user = BrokerUser {
            name: name.to_owned(),
            password: password.to_owned(),
            vhost: env.vhost.clone(),
        };
        rabbitmqctl(&["add_user", name, password]);
        let [configure, write, read] = permissions;
        rabbitmqctl(&[
            "set_permissions",
            "-p",
            &user.vhost,
            name,
            configure,
            write,
            read,
        ]);
        user
    }

    /// The AMQP URL that logs in as this user on the test's vhost.
    pub fn url(&self) -> String {
        amqp_url(&format!("{}:{}", self.name, self.password), &self.vhost)
    }
}

impl Drop for BrokerUser {
    #[allow(
        clippy::let_underscore_must_use,
        reason = "cleanup at best: a drop, maybe while a failed assertion unwinds, cannot fail the test"
    )]
    fn drop(&mut self) {
        let _ = rabbitmqctl_command()
            .args(["delete_user", &self.name])
            .output();
    }
}
