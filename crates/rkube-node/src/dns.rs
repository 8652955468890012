//! The cluster DNS responder: answers pods' queries on the cluster DNS address from the
//! agent's informer caches, following the
//! [Kubernetes DNS specification](https://github.com/kubernetes/dns/blob/master/docs/specification.md)
//! (schema 1.1.0) with CoreDNS's defaults where it leaves a choice.
//!
//! It is authoritative for the cluster domain (`<zone>`, e.g. `cluster.local`) and answers:
//! - `<service>.<ns>.svc.<zone>`: A/AAAA with the cluster IP(s) of a ClusterIP (NodePort,
//!   LoadBalancer) Service; for a headless Service (clusterIP `None`) the IPs of its ready
//!   endpoints (NXDOMAIN while it has none); for an ExternalName Service a CNAME to its
//!   `externalName`, whatever the type asked.
//! - `<endpoint>.<service>.<ns>.svc.<zone>`: A/AAAA of the ready endpoints whose hostname is
//!   `<endpoint>`, or, for one without a hostname, whose IP in dashed form (`10-1-2-3`,
//!   `fd00--1`) it is.
//! - `_<port>._<proto>.<service>.<ns>.svc.<zone>`: SRV for a named port, priority 0, weights
//!   sharing 100, targeting the Service's name (ClusterIP) or each ready endpoint's name
//!   (headless), whose addresses go in the additional section.
//! - `<a-b-c-d>.<ns>.pod.<zone>` (and dashed IPv6): A/AAAA of that IP, whatever the
//!   namespace, as CoreDNS's `pods insecure` mode does.
//! - `dns-version.<zone>` TXT `"1.1.0"`, and the zone's SOA at its apex.
//!
//! Every record has CoreDNS's default TTL of 5 s. A name that exists but has no record of
//! the type asked gets NOERROR with no answer (NODATA), an unknown name in the zone NXDOMAIN;
//! both carry the zone's SOA (CoreDNS's: `ns.dns.<zone>`, `hostmaster.<zone>`, minimum 5 s)
//! in the authority section. Names are compared case-insensitively; the question is echoed
//! as it was asked.
//!
//! What it deliberately does not do:
//! - **No upstream forwarding.** A name outside the cluster domain gets NXDOMAIN (not
//!   authoritative, no SOA), where kube-dns and CoreDNS forward it upstream: the pods this
//!   serves have no route off the machine, so there is nothing to ask.
//! - **No TCP.** Only UDP is served. A response that does not fit the client's UDP size
//!   (512 bytes, or its EDNS size up to 1232) drops its additional records, then the answers
//!   that do not fit, without setting TC: a client told to retry over TCP would find nothing.
//! - **No reverse (PTR) records.** [`ClusterView`] looks Services up by name only, so an IP
//!   cannot be mapped back to one; `in-addr.arpa`/`ip6.arpa` names are outside the zone.
//! - No wildcard queries, no `<ns>.svc.<zone>` namespace names (NXDOMAIN), no zone transfers,
//!   no DNSSEC, no CHAOS-class queries (REFUSED); only the first question of a message is
//!   answered (and echoed).

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Edns, Header, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, SOA, SRV, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use k8s_openapi::api::core::v1::{EndpointAddress, EndpointSubset, Endpoints, Service};

/// TTL of every record and the SOA's minimum (negative-caching TTL): CoreDNS's default.
const TTL: u32 = 5;
/// The version of the Kubernetes DNS schema answered at `dns-version.<zone>`.
const SCHEMA_VERSION: &str = "1.1.0";
/// The largest UDP response sent to a client that advertises more with EDNS.
const MAX_UDP_PAYLOAD: u16 = 1232;
/// The (deprecated) annotation that makes a Service's not-ready endpoints count as ready.
const TOLERATE_UNREADY: &str = "service.alpha.kubernetes.io/tolerate-unready-endpoints";

/// What the responder looks names up in (the agent implements it over its informer caches).
pub trait ClusterView: Send + Sync {
    fn service(&self, namespace: &str, name: &str) -> Option<Arc<Service>>;
    fn endpoints(&self, namespace: &str, name: &str) -> Option<Arc<Endpoints>>;
}

/// Answers one DNS query message (wire bytes) for `cluster_domain` (e.g. "cluster.local");
/// None when the bytes are not a query worth answering (garbage).
pub fn answer(query: &[u8], cluster_domain: &str, view: &dyn ClusterView) -> Option<Vec<u8>> {
    let header = Header::read(&mut BinDecoder::new(query)).ok()?;
    if header.metadata.message_type != MessageType::Query {
        return None;
    }
    let mut response = Message::response(header.metadata.id, header.metadata.op_code);
    response.metadata = Metadata::response_from_request(&header.metadata);
    let request = match Message::from_vec(query) {
        Ok(request) if header.metadata.op_code == OpCode::Query => request,
        result => {
            response.metadata.response_code = match result {
                Ok(_) => ResponseCode::NotImp,
                Err(_) => ResponseCode::FormErr,
            };
            return response.to_vec().ok();
        }
    };
    let mut limit = 512;
    if let Some(edns) = &request.edns {
        limit = edns.max_payload().clamp(512, MAX_UDP_PAYLOAD);
        let mut ours = Edns::new();
        ours.set_max_payload(MAX_UDP_PAYLOAD);
        response.set_edns(ours);
    }
    let Some(question) = request.queries.first() else {
        response.metadata.response_code = ResponseCode::FormErr;
        return response.to_vec().ok();
    };
    response.add_query(question.clone());
    response.metadata.response_code = if request.edns.is_some_and(|edns| edns.version() > 0) {
        ResponseCode::BADVERS
    } else if question.query_class() != DNSClass::IN {
        ResponseCode::Refused
    } else {
        resolve(&mut response, cluster_domain, view)
    };
    encode(response, usize::from(limit))
}

/// Serves queries on a bound UDP socket until `shutdown` resolves (each datagram answered
/// with [`answer`]).
pub async fn serve(
    socket: tokio::net::UdpSocket,
    cluster_domain: String,
    view: Arc<dyn ClusterView>,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut buf = vec![0; 4096];
    loop {
        let (len, peer) = tokio::select! {
            () = &mut shutdown => return,
            received = socket.recv_from(&mut buf) => match received {
                Ok(received) => received,
                Err(error) => {
                    tracing::debug!(%error, "cluster DNS: receive failed");
                    continue;
                }
            },
        };
        if let Some(reply) = answer(&buf[..len], &cluster_domain, &*view) {
            if let Err(error) = socket.send_to(&reply, peer).await {
                tracing::debug!(%error, %peer, "cluster DNS: reply failed");
            }
        }
    }
}

/// Fills in the answer to the response's question and returns its response code.
fn resolve(response: &mut Message, cluster_domain: &str, view: &dyn ClusterView) -> ResponseCode {
    let question = &response.queries[0];
    let (qname, qtype) = (question.name().clone(), question.query_type());
    let zone = match Name::from_ascii(cluster_domain) {
        Ok(zone) if zone.zone_of(&qname) => fqdn(zone.to_lowercase()),
        _ => return ResponseCode::NXDomain,
    };
    response.metadata.authoritative = true;
    let depth = qname.iter().len() - zone.iter().len();
    let labels: Vec<String> =
        (qname.iter().take(depth)).map(|label| String::from_utf8_lossy(label).to_ascii_lowercase()).collect();
    let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
    let Some(node) = lookup(&labels, &qname, &zone, view) else {
        response.add_authorities(soa(&zone, &zone));
        return ResponseCode::NXDomain;
    };
    let answers: Vec<Record> = (node.records.into_iter())
        .filter(|r| [qtype, RecordType::CNAME].contains(&r.record_type()) || qtype == RecordType::ANY)
        .collect();
    if answers.is_empty() {
        response.add_authorities(soa(&zone, &zone));
    } else {
        response.add_additionals(node.additionals);
    }
    response.add_answers(answers);
    ResponseCode::NoError
}

/// The records at one name in the zone, of every type.
#[derive(Default)]
struct Node {
    records: Vec<Record>,
    additionals: Vec<Record>,
}

impl Node {
    fn of(records: Vec<Record>) -> Self {
        Self { records, additionals: Vec::new() }
    }
}

/// The records at `owner`, whose labels below the zone are `labels` (lowercase); None when
/// there is no such name.
fn lookup(labels: &[&str], owner: &Name, zone: &Name, view: &dyn ClusterView) -> Option<Node> {
    let record = |data| Record::from_rdata(owner.clone(), TTL, data);
    let node = match *labels {
        [] => Node::of(soa(owner, zone).into_iter().collect()),
        ["dns-version"] => Node::of(vec![record(RData::TXT(TXT::new(vec![SCHEMA_VERSION.into()])))]),
        ["svc"] | ["pod"] => Node::default(),
        [ip, _, "pod"] => Node::of(vec![address(owner, dashed_ip(ip)?)]),
        [name, ns, "svc"] => {
            let service = view.service(ns, name)?;
            let spec = service.spec.as_ref()?;
            if spec.type_.as_deref() == Some("ExternalName") {
                let target = Name::from_ascii(spec.external_name.as_deref()?).ok()?;
                return Some(Node::of(vec![record(RData::CNAME(CNAME(fqdn(target))))]));
            }
            let headless = spec.cluster_ip.as_deref() == Some("None");
            let ips: Vec<IpAddr> = if headless {
                let endpoints = view.endpoints(ns, name)?;
                ready(&service, &endpoints).filter_map(|(_, a)| a.ip.parse().ok()).collect()
            } else {
                cluster_ips(&service)
            };
            if headless && ips.is_empty() {
                return None;
            }
            Node::of(ips.into_iter().map(|ip| address(owner, ip)).collect())
        }
        [endpoint, name, ns, "svc"] => {
            let service = view.service(ns, name).filter(|s| !external(s))?;
            let endpoints = view.endpoints(ns, name)?;
            let records: Vec<Record> = (ready(&service, &endpoints))
                .filter(|(_, a)| endpoint_name(a) == endpoint)
                .filter_map(|(_, a)| Some(address(owner, a.ip.parse().ok()?)))
                .collect();
            if records.is_empty() {
                return None;
            }
            Node::of(records)
        }
        [port, proto, name, ns, "svc"] => {
            let (port, proto) = (port.strip_prefix('_')?, proto.strip_prefix('_')?);
            srv(owner, zone, view, port, proto, name, ns)?
        }
        _ => return None,
    };
    Some(node)
}

/// The SRV records of the named port `port` over `proto` of Service `ns`/`name`.
fn srv(
    owner: &Name,
    zone: &Name,
    view: &dyn ClusterView,
    port: &str,
    proto: &str,
    name: &str,
    ns: &str,
) -> Option<Node> {
    let named = |p_name: &Option<String>, p_proto: &Option<String>| {
        p_name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(port))
            && p_proto.as_deref().unwrap_or("TCP").eq_ignore_ascii_case(proto)
    };
    let under = |host: Option<&str>| {
        let labels = host.into_iter().chain([name, ns, "svc"]);
        Some(fqdn(Name::from_labels(labels).ok()?.append_domain(zone).ok()?))
    };
    let service = view.service(ns, name).filter(|s| !external(s))?;
    let spec = service.spec.as_ref()?;
    // (port number, target, the target's addresses) of each record.
    let mut targets: Vec<(i32, Name, Vec<IpAddr>)> = Vec::new();
    if spec.cluster_ip.as_deref() == Some("None") {
        let endpoints = view.endpoints(ns, name)?;
        for (subset, a) in ready(&service, &endpoints) {
            for p in subset.ports.iter().flatten().filter(|p| named(&p.name, &p.protocol)) {
                let target = under(Some(&endpoint_name(a)));
                targets.extend(target.map(|target| (p.port, target, a.ip.parse().into_iter().collect())));
            }
        }
    } else {
        for p in spec.ports.iter().flatten().filter(|p| named(&p.name, &p.protocol)) {
            targets.extend(under(None).map(|target| (p.port, target, cluster_ips(&service))));
        }
    }
    if targets.is_empty() {
        return None;
    }
    let weight = u16::try_from(100 / targets.len()).unwrap_or(0).max(1);
    let mut node = Node::default();
    for (port, target, ips) in targets {
        let data = SRV::new(0, weight, u16::try_from(port).ok()?, target.clone());
        node.records.push(Record::from_rdata(owner.clone(), TTL, RData::SRV(data)));
        node.additionals.extend(ips.into_iter().map(|ip| address(&target, ip)));
    }
    Some(node)
}

fn external(service: &Service) -> bool {
    service.spec.as_ref().is_some_and(|spec| spec.type_.as_deref() == Some("ExternalName"))
}

/// The cluster IPs of a Service that has them.
fn cluster_ips(service: &Service) -> Vec<IpAddr> {
    let Some(spec) = &service.spec else { return Vec::new() };
    let ips = match spec.cluster_ips.as_deref() {
        Some(ips) if !ips.is_empty() => ips,
        _ => spec.cluster_ip.as_slice(),
    };
    ips.iter().filter_map(|ip| ip.parse().ok()).collect()
}

/// The ready endpoints of a Service, with the subset each is in.
fn ready<'a>(
    service: &Service,
    endpoints: &'a Endpoints,
) -> impl Iterator<Item = (&'a EndpointSubset, &'a EndpointAddress)> {
    let annotations = service.metadata.annotations.as_ref();
    let tolerate = annotations.and_then(|a| a.get(TOLERATE_UNREADY)).is_some_and(|v| v == "true");
    endpoints.subsets.iter().flatten().flat_map(move |subset| {
        let unready = subset.not_ready_addresses.iter().flatten().filter(move |_| tolerate);
        subset.addresses.iter().flatten().chain(unready).map(move |a| (subset, a))
    })
}

/// The name of an endpoint under its Service: its hostname, else its IP with `-` for `.`/`:`.
fn endpoint_name(address: &EndpointAddress) -> String {
    match address.hostname.as_deref() {
        Some(hostname) if !hostname.is_empty() => hostname.to_ascii_lowercase(),
        _ => address.ip.replace(['.', ':'], "-"),
    }
}

/// The IP written in a pod name: `10-1-2-3` or `fd00--1`.
fn dashed_ip(label: &str) -> Option<IpAddr> {
    let v4 = label.replace('-', ".").parse::<Ipv4Addr>().map(IpAddr::V4);
    v4.or_else(|_| label.replace('-', ":").parse::<Ipv6Addr>().map(IpAddr::V6)).ok()
}

fn address(owner: &Name, ip: IpAddr) -> Record {
    let data = match ip {
        IpAddr::V4(ip) => RData::A(A(ip)),
        IpAddr::V6(ip) => RData::AAAA(AAAA(ip)),
    };
    Record::from_rdata(owner.clone(), TTL, data)
}

/// The zone's SOA, as CoreDNS's: the serial is the time, as nothing records when the
/// cluster's objects last changed.
fn soa(owner: &Name, zone: &Name) -> Option<Record> {
    let under = |host: &str| Name::from_ascii(host).ok()?.append_domain(zone).ok();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let serial = u32::try_from(now.as_secs()).unwrap_or(u32::MAX);
    let data = SOA::new(under("ns.dns")?, under("hostmaster")?, serial, 7200, 1800, 86400, TTL);
    Some(Record::from_rdata(owner.clone(), TTL, RData::SOA(data)))
}

fn fqdn(mut name: Name) -> Name {
    name.set_fqdn(true);
    name
}

/// Encodes the response within `limit` bytes: without its additional records if need be,
/// then with as many answers as fit (TC stays clear: there is no TCP to retry over).
fn encode(mut response: Message, limit: usize) -> Option<Vec<u8>> {
    let bytes = response.to_vec().ok()?;
    if bytes.len() <= limit {
        return Some(bytes);
    }
    response.additionals.clear();
    let answers = std::mem::take(&mut response.answers);
    let mut with = |count: usize| {
        response.answers = answers[..count].to_vec();
        response.to_vec().ok().filter(|bytes| bytes.len() <= limit)
    };
    // Bisect: the first `fits` answers fit, the first `over` do not.
    let (mut fits, mut over, mut best) = (0, answers.len() + 1, with(0)?);
    while over - fits > 1 {
        let mid = (fits + over) / 2;
        match with(mid) {
            Some(bytes) => (fits, best) = (mid, bytes),
            None => over = mid,
        }
    }
    Some(best)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use hickory_proto::op::Query;
    use serde_json::{json, Value};

    use super::*;

    #[derive(Default)]
    struct Cluster {
        services: HashMap<(String, String), Arc<Service>>,
        endpoints: HashMap<(String, String), Arc<Endpoints>>,
    }

    impl ClusterView for Cluster {
        fn service(&self, namespace: &str, name: &str) -> Option<Arc<Service>> {
            self.services.get(&(namespace.into(), name.into())).cloned()
        }
        fn endpoints(&self, namespace: &str, name: &str) -> Option<Arc<Endpoints>> {
            self.endpoints.get(&(namespace.into(), name.into())).cloned()
        }
    }

    impl Cluster {
        /// Adds a Service `ns/name` with `spec`, and Endpoints with `subsets` unless null.
        fn with(mut self, ns: &str, name: &str, spec: Value, subsets: Value) -> Self {
            let key = (ns.to_string(), name.to_string());
            let metadata = json!({"namespace": ns, "name": name});
            let service = json!({"metadata": metadata, "spec": spec});
            self.services.insert(key.clone(), Arc::new(serde_json::from_value(service).unwrap()));
            if !subsets.is_null() {
                let endpoints = json!({"metadata": metadata, "subsets": subsets});
                self.endpoints.insert(key, Arc::new(serde_json::from_value(endpoints).unwrap()));
            }
            self
        }
    }

    fn cluster() -> Cluster {
        let db = json!([{
            "addresses": [{"ip": "10.244.0.5", "hostname": "db-0"}, {"ip": "10.244.0.6"}],
            "notReadyAddresses": [{"ip": "10.244.0.7", "hostname": "db-2"}],
            "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
        }]);
        Cluster::default()
            .with(
                "default",
                "web",
                json!({"clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"],
                       "ports": [{"name": "http", "port": 80}, {"port": 8080}]}),
                json!([{"addresses": [{"ip": "10.244.0.3"}], "ports": [{"name": "http", "port": 8000}]}]),
            )
            .with(
                "default",
                "dual",
                json!({"clusterIP": "10.96.0.21", "clusterIPs": ["10.96.0.21", "fd00::21"]}),
                json!(null),
            )
            .with("default", "ext", json!({"type": "ExternalName", "externalName": "example.com"}), json!(null))
            .with("prod", "db", json!({"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}), db)
            .with("prod", "idle", json!({"clusterIP": "None"}), json!([]))
    }

    fn query(name: &str, rtype: RecordType) -> Message {
        let mut message = Message::new(0x1234, MessageType::Query, OpCode::Query);
        message.metadata.recursion_desired = true;
        message.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
        message
    }

    fn exchange(query: &Message, view: &Cluster) -> Message {
        Message::from_vec(&answer(&query.to_vec().unwrap(), "cluster.local", view).unwrap()).unwrap()
    }

    fn ask(name: &str, rtype: RecordType) -> Message {
        exchange(&query(name, rtype), &cluster())
    }

    fn ips(records: &[Record]) -> Vec<String> {
        (records.iter())
            .filter_map(|r| match &r.data {
                RData::A(A(ip)) => Some(ip.to_string()),
                RData::AAAA(AAAA(ip)) => Some(ip.to_string()),
                _ => None,
            })
            .collect()
    }

    /// Asserts an authoritative empty answer with the zone's SOA in authority.
    fn assert_negative(response: &Message, code: ResponseCode) {
        assert_eq!(response.metadata.response_code, code);
        assert!(response.metadata.authoritative);
        assert!(response.answers.is_empty());
        let [soa] = &response.authorities[..] else { panic!("{:?}", response.authorities) };
        let RData::SOA(data) = &soa.data else { panic!("{soa:?}") };
        assert_eq!(soa.name, Name::from_ascii("cluster.local.").unwrap());
        assert_eq!(data.mname, Name::from_ascii("ns.dns.cluster.local.").unwrap());
        assert_eq!(data.rname, Name::from_ascii("hostmaster.cluster.local.").unwrap());
        assert_eq!((soa.ttl, data.minimum), (5, 5));
    }

    #[test]
    fn cluster_ip_service_answers_its_ip() {
        let request = query("web.default.svc.cluster.local.", RecordType::A);
        let response = exchange(&request, &cluster());
        let meta = response.metadata;
        assert_eq!(
            (meta.id, meta.message_type, meta.response_code),
            (0x1234, MessageType::Response, ResponseCode::NoError)
        );
        assert!(meta.authoritative && meta.recursion_desired && !meta.recursion_available && !meta.truncation);
        assert_eq!(response.queries, request.queries);
        assert_eq!(ips(&response.answers), ["10.96.0.20"]);
        assert_eq!(response.answers[0].name, request.queries[0].name().clone());
        assert_eq!(response.answers[0].ttl, 5);
        assert!(response.authorities.is_empty() && response.additionals.is_empty());
    }

    #[test]
    fn names_match_case_insensitively_with_or_without_trailing_dot() {
        let request = query("WEB.Default.SVC.cluster.LOCAL", RecordType::A);
        for domain in ["cluster.local", "Cluster.Local.", "CLUSTER.LOCAL."] {
            let response = answer(&request.to_vec().unwrap(), domain, &cluster()).unwrap();
            let response = Message::from_vec(&response).unwrap();
            assert_eq!(ips(&response.answers), ["10.96.0.20"], "{domain}");
            assert_eq!(response.queries[0].name().to_ascii(), "WEB.Default.SVC.cluster.LOCAL.");
        }
        assert_eq!(ips(&ask("Db-0.DB.prod.svc.cluster.local", RecordType::A).answers), ["10.244.0.5"]);
        assert_eq!(ips(&ask("_HTTP._Tcp.web.default.svc.cluster.local", RecordType::SRV).additionals), ["10.96.0.20"]);
    }

    #[test]
    fn dual_stack_service_answers_each_family() {
        assert_eq!(ips(&ask("dual.default.svc.cluster.local", RecordType::A).answers), ["10.96.0.21"]);
        assert_eq!(ips(&ask("dual.default.svc.cluster.local", RecordType::AAAA).answers), ["fd00::21"]);
        assert_eq!(ips(&ask("dual.default.svc.cluster.local", RecordType::ANY).answers), ["10.96.0.21", "fd00::21"]);
    }

    #[test]
    fn known_name_without_the_type_asked_is_nodata() {
        for (name, rtype) in [
            ("web.default.svc.cluster.local", RecordType::AAAA),
            ("web.default.svc.cluster.local", RecordType::MX),
            ("web.default.svc.cluster.local", RecordType::CNAME),
            ("db.prod.svc.cluster.local", RecordType::AAAA),
            ("_http._tcp.web.default.svc.cluster.local", RecordType::A),
            ("10-244-0-9.default.pod.cluster.local", RecordType::AAAA),
            ("svc.cluster.local", RecordType::A),
            ("cluster.local", RecordType::A),
        ] {
            assert_negative(&ask(name, rtype), ResponseCode::NoError);
        }
    }

    #[test]
    fn unknown_names_in_the_zone_are_nxdomain() {
        for name in [
            "nope.default.svc.cluster.local",
            "web.other.svc.cluster.local",
            "default.svc.cluster.local",
            "web.default.svc.cluster.local.default.svc.cluster.local",
            "nope.web.default.svc.cluster.local",
            "nope.ext.default.svc.cluster.local",
            "db-2.db.prod.svc.cluster.local",
            "idle.prod.svc.cluster.local",
            "not-an-ip.default.pod.cluster.local",
            "_https._tcp.web.default.svc.cluster.local",
            "_http._udp.web.default.svc.cluster.local",
            "_pg._tcp.idle.prod.svc.cluster.local",
            "foo.cluster.local",
        ] {
            assert_negative(&ask(name, RecordType::A), ResponseCode::NXDomain);
        }
    }

    #[test]
    fn names_outside_the_zone_are_nxdomain_without_authority() {
        for (name, rtype) in [
            ("example.com", RecordType::A),
            ("local", RecordType::SOA),
            ("20.0.96.10.in-addr.arpa", RecordType::PTR),
            ("web.default.svc.cluster.localhost", RecordType::A),
        ] {
            let response = ask(name, rtype);
            assert_eq!(response.metadata.response_code, ResponseCode::NXDomain, "{name}");
            assert!(!response.metadata.authoritative, "{name}");
            assert!(response.answers.is_empty() && response.authorities.is_empty(), "{name}");
        }
    }

    #[test]
    fn headless_service_answers_its_ready_endpoints() {
        assert_eq!(ips(&ask("db.prod.svc.cluster.local", RecordType::A).answers), ["10.244.0.5", "10.244.0.6"]);
        assert_eq!(ips(&ask("db-0.db.prod.svc.cluster.local", RecordType::A).answers), ["10.244.0.5"]);
        assert_eq!(ips(&ask("10-244-0-6.db.prod.svc.cluster.local", RecordType::A).answers), ["10.244.0.6"]);
        // The not-ready one counts once the Service tolerates unready endpoints.
        let mut view = cluster();
        let key = ("prod".to_string(), "db".to_string());
        let mut service = (*view.services[&key]).clone();
        service.metadata.annotations = Some([(TOLERATE_UNREADY.to_string(), "true".to_string())].into());
        view.services.insert(key, Arc::new(service));
        let response = exchange(&query("db-2.db.prod.svc.cluster.local", RecordType::A), &view);
        assert_eq!(ips(&response.answers), ["10.244.0.7"]);
    }

    #[test]
    fn external_name_service_is_a_cname() {
        for rtype in [RecordType::A, RecordType::AAAA, RecordType::CNAME] {
            let response = ask("ext.default.svc.cluster.local", rtype);
            assert_eq!(response.metadata.response_code, ResponseCode::NoError);
            let [record] = &response.answers[..] else { panic!("{:?}", response.answers) };
            assert_eq!(record.data, RData::CNAME(CNAME(Name::from_ascii("example.com.").unwrap())));
            assert_eq!(record.ttl, 5);
        }
    }

    #[test]
    fn pod_names_answer_the_ip_they_spell() {
        assert_eq!(ips(&ask("10-244-0-9.default.pod.cluster.local", RecordType::A).answers), ["10.244.0.9"]);
        assert_eq!(ips(&ask("10-244-0-9.Whatever.POD.cluster.local", RecordType::A).answers), ["10.244.0.9"]);
        assert_eq!(ips(&ask("fd00--9.default.pod.cluster.local", RecordType::AAAA).answers), ["fd00::9"]);
    }

    #[test]
    fn named_ports_have_srv_records() {
        let srv = |records: &[Record]| -> Vec<(u16, u16, u16, String)> {
            (records.iter())
                .map(|r| match &r.data {
                    RData::SRV(s) => (s.priority, s.weight, s.port, s.target.to_ascii()),
                    other => panic!("{other:?}"),
                })
                .collect()
        };
        let response = ask("_http._tcp.web.default.svc.cluster.local", RecordType::SRV);
        assert_eq!(srv(&response.answers), [(0, 100, 80, "web.default.svc.cluster.local.".into())]);
        assert_eq!(ips(&response.additionals), ["10.96.0.20"]);
        assert_eq!(response.additionals[0].name.to_ascii(), "web.default.svc.cluster.local.");

        let response = ask("_pg._tcp.db.prod.svc.cluster.local", RecordType::SRV);
        let targets = [
            (0, 50, 5432, "db-0.db.prod.svc.cluster.local.".into()),
            (0, 50, 5432, "10-244-0-6.db.prod.svc.cluster.local.".into()),
        ];
        assert_eq!(srv(&response.answers), targets);
        assert_eq!(ips(&response.additionals), ["10.244.0.5", "10.244.0.6"]);
    }

    #[test]
    fn schema_version_and_apex_soa() {
        let response = ask("dns-version.cluster.local", RecordType::TXT);
        let [record] = &response.answers[..] else { panic!("{:?}", response.answers) };
        assert_eq!(record.data, RData::TXT(TXT::new(vec!["1.1.0".into()])));
        let response = ask("cluster.local", RecordType::SOA);
        assert!(matches!(&response.answers[..], [Record { data: RData::SOA(_), .. }]));
        assert!(response.authorities.is_empty());
    }

    #[test]
    fn only_the_first_question_is_answered() {
        let mut request = query("web.default.svc.cluster.local.", RecordType::A);
        request.add_query(Query::query(Name::from_ascii("dual.default.svc.cluster.local.").unwrap(), RecordType::A));
        let response = exchange(&request, &cluster());
        assert_eq!(response.queries, request.queries[..1]);
        assert_eq!(ips(&response.answers), ["10.96.0.20"]);
    }

    #[test]
    fn garbage_is_ignored_or_formerr() {
        let view = cluster();
        assert_eq!(answer(b"", "cluster.local", &view), None);
        assert_eq!(answer(b"\x12\x34\x01", "cluster.local", &view), None);
        // A response is never answered.
        let mut response = query("web.default.svc.cluster.local", RecordType::A);
        response.metadata.message_type = MessageType::Response;
        assert_eq!(answer(&response.to_vec().unwrap(), "cluster.local", &view), None);
        // A header that parses, then a question that does not: FORMERR, id kept.
        let mut bytes = query("web.default.svc.cluster.local", RecordType::A).to_vec().unwrap();
        bytes.truncate(20);
        let response = Message::from_vec(&answer(&bytes, "cluster.local", &view).unwrap()).unwrap();
        assert_eq!((response.metadata.id, response.metadata.response_code), (0x1234, ResponseCode::FormErr));
        // No question at all.
        let empty = Message::new(7, MessageType::Query, OpCode::Query);
        assert_eq!(exchange(&empty, &view).metadata.response_code, ResponseCode::FormErr);
    }

    #[test]
    fn other_opcodes_and_classes_are_refused() {
        let mut request = query("web.default.svc.cluster.local", RecordType::A);
        request.metadata.op_code = OpCode::Status;
        assert_eq!(exchange(&request, &cluster()).metadata.response_code, ResponseCode::NotImp);
        let mut request = query("web.default.svc.cluster.local", RecordType::A);
        request.queries[0].set_query_class(DNSClass::CH);
        assert_eq!(exchange(&request, &cluster()).metadata.response_code, ResponseCode::Refused);
    }

    #[test]
    fn edns_is_answered_and_responses_fit_the_udp_size() {
        let addresses: Vec<Value> =
            (1..=200).map(|i| json!({"ip": format!("10.244.{}.{}", i / 100, i % 100)})).collect();
        let view = cluster().with("prod", "big", json!({"clusterIP": "None"}), json!([{"addresses": addresses}]));
        let request = query("big.prod.svc.cluster.local", RecordType::A);
        let bytes = answer(&request.to_vec().unwrap(), "cluster.local", &view).unwrap();
        let response = Message::from_vec(&bytes).unwrap();
        assert!(bytes.len() <= 512 && response.answers.len() == (512 - 12 - 32) / 16 && !response.metadata.truncation);
        assert!(response.edns.is_none());

        let mut request = request;
        let mut edns = Edns::new();
        edns.set_max_payload(4096);
        request.set_edns(edns.clone());
        let bytes = answer(&request.to_vec().unwrap(), "cluster.local", &view).unwrap();
        let response = Message::from_vec(&bytes).unwrap();
        assert!(bytes.len() <= 1232 && response.answers.len() > 60 && response.answers.len() < 200);
        assert_eq!(response.edns.as_ref().map(Edns::max_payload), Some(1232));

        edns.set_version(1);
        request.set_edns(edns);
        let response = exchange(&request, &view);
        // BADVERS, which shares its number (16) with BADSIG.
        assert_eq!(u16::from(response.metadata.response_code), u16::from(ResponseCode::BADVERS));
        assert!(response.answers.is_empty());
    }

    #[tokio::test]
    async fn serves_queries_over_udp_until_shutdown() {
        let server = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let address = server.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let view: Arc<dyn ClusterView> = Arc::new(cluster());
        let task = tokio::spawn(serve(server, "cluster.local".into(), view, async {
            let _ = stopped.await;
        }));
        let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.send_to(b"garbage", address).await.unwrap();
        let request = query("web.default.svc.cluster.local", RecordType::A).to_vec().unwrap();
        client.send_to(&request, address).await.unwrap();
        let mut buf = [0; 512];
        let received = tokio::time::timeout(std::time::Duration::from_secs(5), client.recv(&mut buf));
        let len = received.await.unwrap().unwrap();
        assert_eq!(ips(&Message::from_vec(&buf[..len]).unwrap().answers), ["10.96.0.20"]);
        stop.send(()).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), task).await.unwrap().unwrap();
    }
}
