//! CREATE, UPDATE and DELETE: listeners, inter-router connectors and
//! address prefixes changed at run time. What is created lasts until it
//! is deleted or the router stops (it is not written to the configuration
//! file); the configuration file's own entities are changed there (403).
//! Every entity created passes the checks the configuration file's pass
//! (TLS profiles, SASL mechanisms, the mesh's authentication rules).

use std::sync::Arc;

use ferry_proto::codec::{Map, Value};

use super::entities::{Configured, EntityType, Managed};
use super::request::{Operation, Request, Response};
use crate::config::{AddressConfig, Config, ConnectorConfig, ListenerConfig, Named as _, Role};
use crate::core::Core;
use crate::listener::{Added, Listeners};
use crate::security::Security;
use crate::shutdown::{Shutdown, Trigger};

/// A running entity created through management.
struct Created<C, R> {
    name: String,
    config: C,
    /// What keeps it running: dropped, it stops.
    running: R,
}

/// The entities created at run time, and what changes them.
pub struct Changes {
    core: Arc<Core>,
    security: Arc<Security>,
    config: Arc<Config>,
    server: Listeners,
    connectors: Vec<Created<ConnectorConfig, Trigger>>,
    listeners: Vec<Created<ListenerConfig, Added>>,
    prefixes: Vec<Created<AddressConfig, ()>>,
}

/// The configuration file's entities (named by their identity), then
/// those created.
fn managed<C: Configured, R>(own: &[C], created: &[Created<C, R>]) -> Vec<Managed<C>> {
    let own = own.iter().map(|c| Managed::of(c.id(), c));
    own.chain(
        created
            .iter()
            .map(|c| Managed::of(c.name.clone(), &c.config)),
    )
    .collect()
}

impl Changes {
    /// No entity created yet.
    pub fn new(
        core: Arc<Core>,
        security: Arc<Security>,
        config: Arc<Config>,
        server: Listeners,
    ) -> Self {
        Self {
            core,
            security,
            config,
            server,
            connectors: Vec::new(),
            listeners: Vec::new(),
            prefixes: Vec::new(),
        }
    }

    /// Connectors: the configuration's, then those created.
    pub fn connectors(&self) -> Vec<Managed<ConnectorConfig>> {
        managed(&self.config.connectors, &self.connectors)
    }

    /// Listeners: the configuration's, then those created.
    pub fn listeners(&self) -> Vec<Managed<ListenerConfig>> {
        managed(&self.config.listeners, &self.listeners)
    }

    /// Address prefixes: the configuration's, then those created.
    pub fn prefixes(&self) -> Vec<Managed<AddressConfig>> {
        managed(&self.config.addresses, &self.prefixes)
    }

    /// Answers CREATE, UPDATE or DELETE of an entity of type `t`.
    pub async fn apply(&mut self, t: EntityType, req: &Request, shutdown: &Shutdown) -> Response {
        let result = match (t, &req.operation) {
            (EntityType::Connector, Operation::Create) => self.create_connector(req, shutdown),
            (EntityType::Connector, Operation::Update) => self.update_connector(req, shutdown),
            (EntityType::Listener, Operation::Create) => self.create_listener(req).await,
            (EntityType::Listener, Operation::Update) => self.update_listener(req),
            (EntityType::ConfigAddress, Operation::Create) => self.create_prefix(req),
            (EntityType::ConfigAddress, Operation::Update) => self.update_prefix(req),
            (_, Operation::Delete) => self.delete(t, req).await,
            _ => Err(Response::status(
                501,
                format!("{} cannot be changed at run time", t.name()),
            )),
        };
        result.unwrap_or_else(|refused| refused)
    }

    /// The name a CREATE gives (else the identity).
    fn name(req: &Request, id: String) -> String {
        req.name.clone().unwrap_or(id)
    }

    /// Refuses a name or identity already in use by an entity of the type.
    fn unused(existing: &[Managed<impl Clone>], id: &str, name: &str) -> Result<(), Response> {
        match existing.iter().find(|e| e.id == id || e.name == name) {
            Some(e) => Err(Response::status(409, format!("{} exists", e.id))),
            None => Ok(()),
        }
    }

    /// Which created entity the request names, as an index among those
    /// created: `all` holds the configuration file's `configured` first
    /// (403: changed there), then the created ones.
    fn find<C: Clone>(
        req: &Request,
        all: &[Managed<C>],
        configured: usize,
    ) -> Result<usize, Response> {
        let wanted = |e: &Managed<C>| match &req.identity {
            Some(id) => *id == e.id,
            None => req.name.as_ref() == Some(&e.name),
        };
        match all.iter().position(wanted) {
            Some(i) if i >= configured => Ok(i - configured),
            Some(_) => Err(Response::status(
                403,
                "an entity of the configuration file is changed there",
            )),
            None if req.identity.is_none() && req.name.is_none() => {
                Err(bad("a name or an identity is needed"))
            }
            None => Err(Response::status(404, "no such entity")),
        }
    }

    async fn delete(&mut self, t: EntityType, req: &Request) -> Result<Response, Response> {
        let gone = match t {
            EntityType::Connector => {
                let i = Self::find(req, &self.connectors(), self.config.connectors.len())?;
                let c = self.connectors.remove(i);
                format!("connector to {}:{}", c.config.host, c.config.port)
            }
            EntityType::Listener => {
                let i = Self::find(req, &self.listeners(), self.config.listeners.len())?;
                let l = self.listeners.remove(i);
                let local = l.running.local;
                // Answered once nothing more can connect.
                l.running.close().await;
                format!("listener on {local}")
            }
            EntityType::ConfigAddress => {
                let i = Self::find(req, &self.prefixes(), self.config.addresses.len())?;
                let a = self.prefixes.remove(i);
                self.publish_prefixes();
                format!("address prefix {:?}", a.config.prefix)
            }
            _ => {
                return Err(Response::status(
                    501,
                    format!("{} cannot be changed at run time", t.name()),
                ));
            }
        };
        tracing::info!("{gone} deleted through management");
        Ok(Response::status(204, "No Content"))
    }

    fn create_connector(
        &mut self,
        req: &Request,
        shutdown: &Shutdown,
    ) -> Result<Response, Response> {
        let c = connector_from(&Attributes(&req.attributes), None).map_err(bad)?;
        let id = c.id();
        let name = Self::name(req, id.clone());
        Self::unused(&self.connectors(), &id, &name)?;
        self.config.check_connector(&c).map_err(bad)?;
        let running = self.start_connector(&c, shutdown);
        tracing::info!(
            "connector to {}:{} created through management",
            c.host,
            c.port
        );
        let row = Managed::of(name.clone(), &c);
        self.connectors.push(Created {
            name,
            config: c,
            running,
        });
        Ok(Response::with(201, "Created", row.attributes()))
    }

    /// UPDATE: the connector dials again with its new settings.
    fn update_connector(
        &mut self,
        req: &Request,
        shutdown: &Shutdown,
    ) -> Result<Response, Response> {
        let i = Self::find(req, &self.connectors(), self.config.connectors.len())?;
        let old = &self.connectors[i].config;
        let c = connector_from(&Attributes(&req.attributes), Some(old)).map_err(bad)?;
        if (&c.host, c.port) != (&old.host, old.port) {
            return Err(bad(
                "host and port name a connector: delete it and create another",
            ));
        }
        self.config.check_connector(&c).map_err(bad)?;
        let running = self.start_connector(&c, shutdown);
        tracing::info!(
            "connector to {}:{} updated through management; it dials again",
            c.host,
            c.port
        );
        let entry = &mut self.connectors[i];
        entry.config = c;
        entry.running = running;
        let row = Managed::of(entry.name.clone(), &entry.config);
        Ok(Response::ok(row.attributes()))
    }

    /// Starts dialing `c` until the returned trigger is dropped or the
    /// router stops.
    fn start_connector(&self, c: &ConnectorConfig, shutdown: &Shutdown) -> Trigger {
        use tracing::Instrument;
        let (stop, stopped) = crate::shutdown::channel();
        let index = self.config.connectors.len() + self.connectors.len();
        let task = crate::mesh::connector::run(
            self.core.clone(),
            self.security.clone(),
            index,
            c.clone(),
            stopped,
        );
        let router = shutdown.clone();
        tokio::spawn(
            async move {
                tokio::select! {
                    () = task => {}
                    () = router.triggered() => {}
                }
            }
            .in_current_span(),
        );
        stop
    }

    async fn create_listener(&mut self, req: &Request) -> Result<Response, Response> {
        let mut l = listener_from(&Attributes(&req.attributes), None).map_err(bad)?;
        let existing = self.listeners();
        // Port 0 binds a port of the system's choosing: it clashes with none.
        if l.port != 0 {
            Self::unused(&existing, &l.id(), req.name.as_deref().unwrap_or(""))?;
        }
        self.config.check_listener(&l).map_err(bad)?;
        let index = self.config.listeners.len() + self.listeners.len();
        let running = self.server.add(index, &l).await.map_err(|e| {
            Response::status(
                400,
                format!(
                    "{e}: {}",
                    std::error::Error::source(&e).map_or(String::new(), ToString::to_string)
                ),
            )
        })?;
        l.port = running.local.port();
        let id = l.id();
        let name = Self::name(req, id.clone());
        // On a clash `running` is dropped: it stops listening.
        Self::unused(&existing, &id, &name)?;
        tracing::info!("listener on {} created through management", running.local);
        let row = Managed::of(name.clone(), &l);
        self.listeners.push(Created {
            name,
            config: l,
            running,
        });
        Ok(Response::with(201, "Created", row.attributes()))
    }

    /// UPDATE: connections accepted from now on get the new settings;
    /// host and port cannot change (they name the listener).
    fn update_listener(&mut self, req: &Request) -> Result<Response, Response> {
        let i = Self::find(req, &self.listeners(), self.config.listeners.len())?;
        let old = &self.listeners[i].config;
        let l = listener_from(&Attributes(&req.attributes), Some(old)).map_err(bad)?;
        if (&l.host, l.port) != (&old.host, old.port) {
            return Err(bad(
                "host and port name a listener: delete it and create another",
            ));
        }
        self.config.check_listener(&l).map_err(bad)?;
        let entry = &mut self.listeners[i];
        entry.running.update(l.clone());
        entry.config = l;
        tracing::info!(
            "listener on {} updated through management",
            entry.running.local
        );
        let row = Managed::of(entry.name.clone(), &entry.config);
        Ok(Response::ok(row.attributes()))
    }

    fn create_prefix(&mut self, req: &Request) -> Result<Response, Response> {
        let a = prefix_from(&Attributes(&req.attributes), None).map_err(bad)?;
        let id = a.id();
        let name = Self::name(req, id.clone());
        Self::unused(&self.prefixes(), &id, &name)?;
        self.config.check_address(&a).map_err(bad)?;
        tracing::info!(
            "address prefix {:?} ({}) created through management",
            a.prefix,
            a.distribution.as_str()
        );
        let row = Managed::of(name.clone(), &a);
        self.prefixes.push(Created {
            name,
            config: a,
            running: (),
        });
        self.publish_prefixes();
        Ok(Response::with(201, "Created", row.attributes()))
    }

    /// UPDATE: the new distribution governs addresses created from now on.
    fn update_prefix(&mut self, req: &Request) -> Result<Response, Response> {
        let i = Self::find(req, &self.prefixes(), self.config.addresses.len())?;
        let old = &self.prefixes[i].config;
        let a = prefix_from(&Attributes(&req.attributes), Some(old)).map_err(bad)?;
        if a.prefix != old.prefix {
            return Err(bad(
                "the prefix names the entry: delete it and create another",
            ));
        }
        self.prefixes[i].config = a;
        self.publish_prefixes();
        let entry = &self.prefixes[i];
        let row = Managed::of(entry.name.clone(), &entry.config);
        tracing::info!(
            "address prefix {:?} updated through management ({})",
            row.config.prefix,
            row.config.distribution.as_str()
        );
        Ok(Response::ok(row.attributes()))
    }

    /// Hands the prefixes in use to the core.
    fn publish_prefixes(&self) {
        let all = self.prefixes().into_iter().map(|a| a.config).collect();
        self.core.set_prefixes(all);
    }
}

fn bad(why: impl Into<String>) -> Response {
    Response::status(400, why.into())
}

/// A request's attributes, read leniently as Qpid Dispatch Router's tools
/// send them (numbers and booleans often as strings).
struct Attributes<'a>(&'a Map);

impl Attributes<'_> {
    fn get(&self, k: &str) -> Option<&Value> {
        self.0.get(k).filter(|v| !matches!(v, Value::Null))
    }

    fn text(&self, k: &str) -> Option<String> {
        self.get(k).and_then(Value::as_text).map(str::to_string)
    }

    fn number(&self, k: &str) -> Result<Option<u64>, String> {
        let Some(v) = self.get(k) else {
            return Ok(None);
        };
        v.as_u64()
            .or_else(|| match *v {
                Value::Int(x) => u64::try_from(x).ok(),
                Value::Long(x) => u64::try_from(x).ok(),
                _ => None,
            })
            .or_else(|| v.as_text().and_then(|t| t.parse().ok()))
            .map(Some)
            .ok_or_else(|| format!("{k} must be a number"))
    }

    fn boolean(&self, k: &str) -> Result<Option<bool>, String> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => match v.as_text() {
                Some("true" | "yes") => Ok(Some(true)),
                Some("false" | "no") => Ok(Some(false)),
                _ => Err(format!("{k} must be true or false")),
            },
        }
    }

    /// A list of strings, or one string of words (`"PLAIN ANONYMOUS"`).
    fn words(&self, k: &str) -> Result<Option<Vec<String>>, String> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::List(items)) => items
                .iter()
                .map(|i| i.as_text().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .map(Some)
                .ok_or_else(|| format!("{k} must be a list of strings")),
            Some(v) => v
                .as_text()
                .map(|t| {
                    Some(
                        t.split([' ', ','])
                            .filter(|w| !w.is_empty())
                            .map(str::to_string)
                            .collect(),
                    )
                })
                .ok_or_else(|| format!("{k} must be a string")),
        }
    }

    fn port(&self) -> Result<Option<u16>, String> {
        self.number("port")?
            .map(|p| u16::try_from(p).map_err(|_| "port must be at most 65535".to_string()))
            .transpose()
    }

    fn named<T: crate::config::Named>(&self, k: &str) -> Result<Option<T>, String> {
        self.text(k).map(|t| T::from_name(&t)).transpose()
    }
}

/// A connector from CREATE's attributes (`host`, `port`; optionally
/// `role`, `cost`, `sslProfile`, `serverName`), or `old` changed by
/// UPDATE's.
fn connector_from(
    a: &Attributes,
    old: Option<&ConnectorConfig>,
) -> Result<ConnectorConfig, String> {
    let mut c = match old {
        Some(old) => old.clone(),
        None => {
            let host = a.text("host").ok_or("host is required")?;
            let port = a.port()?.ok_or("port is required")?;
            ConnectorConfig::new(host, port, 1)
        }
    };
    if let Some(host) = a.text("host") {
        c.host = host;
    }
    if let Some(port) = a.port()? {
        c.port = port;
    }
    if let Some(cost) = a.number("cost")? {
        c.cost = u32::try_from(cost).map_err(|_| "cost is too large".to_string())?;
    }
    if let Some(role) = a.named("role")? {
        c.role = role;
    }
    if c.role != Role::InterRouter {
        return Err("only inter-router connectors can be created".into());
    }
    if let Some(tls) = a.text("sslProfile") {
        c.tls = Some(tls);
    }
    if let Some(name) = a.text("serverName") {
        c.server_name = Some(name);
    }
    Ok(c)
}

/// A listener from CREATE's attributes (`host`, `port`; optionally
/// `role`, `saslMechanisms`, `authenticatePeer`, `sslProfile`,
/// `clientCert`), or `old` changed by UPDATE's. The configuration file's
/// `allow_…` exceptions cannot be given: a listener created at run time
/// is held to the secure rules.
fn listener_from(a: &Attributes, old: Option<&ListenerConfig>) -> Result<ListenerConfig, String> {
    let mut l = match old {
        Some(old) => old.clone(),
        None => ListenerConfig::new(
            a.text("host").ok_or("host is required")?,
            a.port()?.ok_or("port is required")?,
            Role::Normal,
        ),
    };
    if let Some(host) = a.text("host") {
        l.host = host;
    }
    if let Some(port) = a.port()? {
        l.port = port;
    }
    if let Some(role) = a.named("role")? {
        l.role = role;
    }
    if let Some(mechanisms) = a.words("saslMechanisms")? {
        l.sasl_mechanisms = mechanisms;
    }
    if let Some(require) = a.boolean("authenticatePeer")? {
        l.require_sasl = require;
    }
    if let Some(tls) = a.text("sslProfile") {
        l.tls = Some(tls);
    }
    if let Some(cert) = a.named("clientCert")? {
        l.client_cert = cert;
    }
    Ok(l)
}

/// An address prefix from CREATE's attributes (`prefix`, `distribution`,
/// balanced by default), or `old` changed by UPDATE's.
fn prefix_from(a: &Attributes, old: Option<&AddressConfig>) -> Result<AddressConfig, String> {
    let mut p = match old {
        Some(old) => old.clone(),
        None => AddressConfig {
            prefix: a.text("prefix").ok_or("prefix is required")?,
            distribution: Default::default(),
            brokered: None,
            broker: None,
        },
    };
    if let Some(prefix) = a.text("prefix") {
        p.prefix = prefix;
    }
    if let Some(d) = a.named("distribution")? {
        p.distribution = d;
    }
    Ok(p)
}
