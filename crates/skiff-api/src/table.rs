//! Server-side printing: the `Table` columns and cells kubectl shows for each resource (one
//! concern, a long table: every served kind has its columns here).
//!
//! Columns and cells follow upstream's `pkg/printers/internalversion` for Kubernetes 1.33.
//! Column names are upstream's wire names ("Name", "Nominated Node"); kubectl upper-cases
//! them. Cells always include the wide (priority 1) columns, as the apiserver's table
//! convertor does; kubectl hides them unless `-o wide`.

use serde_json::{Value, json};

use crate::ResourceInfo;
use crate::selectors::LabelSelector;

/// One column of a `Table` (`meta.k8s.io/v1` `TableColumnDefinition`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    /// "string", "integer", "number", "boolean" or "date".
    pub type_: &'static str,
    /// "name" for the NAME column, else "".
    pub format: &'static str,
    pub description: &'static str,
    /// 0 = always shown; 1 = only with `-o wide`.
    pub priority: i32,
}

const fn c(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column {
        name,
        type_,
        format: "",
        description,
        priority: 0,
    }
}

const fn wide(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column {
        name,
        type_,
        format: "",
        description,
        priority: 1,
    }
}

const NAME: Column = Column {
    name: "Name",
    type_: "string",
    format: "name",
    description: "Name must be unique within a namespace.",
    priority: 0,
};
const AGE: Column = c(
    "Age",
    "string",
    "CreationTimestamp is a timestamp representing the server time when this object was created.",
);
const CONTAINERS: Column = wide(
    "Containers",
    "string",
    "Names of each container in the template.",
);
const IMAGES: Column = wide(
    "Images",
    "string",
    "Images referenced by each container in the template.",
);
const SELECTOR: Column = wide("Selector", "string", "Label selector for pods.");

/// The columns of resource `info`.
pub fn columns(info: &ResourceInfo) -> Vec<Column> {
    match (info.group, info.plural) {
        ("", "pods") => vec![
            NAME,
            c(
                "Ready",
                "string",
                "The aggregate readiness state of this pod for accepting traffic.",
            ),
            c(
                "Status",
                "string",
                "The aggregate status of the containers in this pod.",
            ),
            c(
                "Restarts",
                "string",
                "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
            ),
            AGE,
            wide("IP", "string", "IP address allocated to the pod."),
            wide(
                "Node",
                "string",
                "Name of the node this pod is assigned to.",
            ),
            wide(
                "Nominated Node",
                "string",
                "Name of the node this pod is nominated to.",
            ),
            wide(
                "Readiness Gates",
                "string",
                "Pod readiness gates, true/total.",
            ),
        ],
        ("apps", "deployments") => vec![
            NAME,
            c("Ready", "string", "Number of the pod with ready state"),
            c(
                "Up-to-date",
                "integer",
                "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
            ),
            c(
                "Available",
                "integer",
                "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
            ),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("apps", "replicasets") => vec![
            NAME,
            c(
                "Desired",
                "integer",
                "Replicas is the number of desired replicas.",
            ),
            c(
                "Current",
                "integer",
                "Replicas is the most recently observed number of replicas.",
            ),
            c(
                "Ready",
                "integer",
                "The number of ready replicas for this replica set.",
            ),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("", "replicationcontrollers") => vec![
            NAME,
            c(
                "Desired",
                "integer",
                "Replicas is the number of desired replicas.",
            ),
            c(
                "Current",
                "integer",
                "Replicas is the most recently observed number of replicas.",
            ),
            c(
                "Ready",
                "integer",
                "The number of ready replicas for this replication controller.",
            ),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("", "services") => vec![
            NAME,
            c(
                "Type",
                "string",
                "type determines how the Service is exposed.",
            ),
            c(
                "Cluster-IP",
                "string",
                "clusterIP is the IP address of the service.",
            ),
            c(
                "External-IP",
                "string",
                "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
            ),
            c(
                "Port(s)",
                "string",
                "The list of ports that are exposed by this service.",
            ),
            AGE,
            wide(
                "Selector",
                "string",
                "Route service traffic to pods with label keys and values matching this selector.",
            ),
        ],
        ("", "namespaces") => vec![
            NAME,
            c("Status", "string", "The status of the namespace"),
            AGE,
        ],
        ("", "nodes") => vec![
            NAME,
            c("Status", "string", "The status of the node"),
            c("Roles", "string", "The roles of the node"),
            AGE,
            c("Version", "string", "Kubelet Version reported by the node."),
            wide(
                "Internal-IP",
                "string",
                "List of addresses reachable to the node. Queried from cloud provider, if available.",
            ),
            wide(
                "External-IP",
                "string",
                "List of addresses reachable to the node. Queried from cloud provider, if available.",
            ),
            wide(
                "OS-Image",
                "string",
                "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
            ),
            wide(
                "Kernel-Version",
                "string",
                "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
            ),
            wide(
                "Container-Runtime",
                "string",
                "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
            ),
        ],
        ("", "configmaps") => vec![
            NAME,
            c("Data", "string", "Number of keys in the ConfigMap."),
            AGE,
        ],
        ("", "secrets") => vec![
            NAME,
            c(
                "Type",
                "string",
                "Used to facilitate programmatic handling of secret data.",
            ),
            c("Data", "string", "Number of keys in the Secret."),
            AGE,
        ],
        ("", "endpoints") => vec![
            NAME,
            c("Endpoints", "string", "Endpoints of the service"),
            AGE,
        ],
        ("", "events") => vec![
            c(
                "Last Seen",
                "string",
                "The time at which the most recent occurrence of this event was recorded.",
            ),
            c(
                "Type",
                "string",
                "Type of this event (Normal, Warning), new types could be added in the future",
            ),
            c(
                "Reason",
                "string",
                "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
            ),
            c("Object", "string", "The object that this event is about."),
            wide(
                "Subobject",
                "string",
                "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement.",
            ),
            wide(
                "Source",
                "string",
                "The component reporting this event. Should be a short machine understandable string.",
            ),
            c(
                "Message",
                "string",
                "A human-readable description of the status of this operation.",
            ),
            wide(
                "First Seen",
                "string",
                "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
            ),
            wide(
                "Count",
                "string",
                "The number of times this event has occurred.",
            ),
            Column {
                priority: 1,
                ..NAME
            },
        ],
        ("", "serviceaccounts") => vec![
            NAME,
            c(
                "Secrets",
                "string",
                "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
            ),
            AGE,
        ],
        ("apps", "daemonsets") => vec![
            NAME,
            c(
                "Desired",
                "integer",
                "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod).",
            ),
            c(
                "Current",
                "integer",
                "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.",
            ),
            c(
                "Ready",
                "integer",
                "numberReady is the number of nodes that should be running the daemon pod and have one or more of the daemon pod running with a Ready Condition.",
            ),
            c(
                "Up-to-date",
                "integer",
                "The total number of nodes that are running updated daemon pod",
            ),
            c(
                "Available",
                "integer",
                "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)",
            ),
            c(
                "Node Selector",
                "string",
                "NodeSelector is a selector which must be true for the pod to fit on a node.",
            ),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("apps", "statefulsets") => vec![
            NAME,
            c("Ready", "string", "Number of the pod with ready state"),
            AGE,
            CONTAINERS,
            IMAGES,
        ],
        ("batch", "jobs") => vec![
            NAME,
            c("Status", "string", "Status of the job."),
            c("Completions", "string", "The completion status of the job."),
            c("Duration", "string", "Time required to complete the job."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("batch", "cronjobs") => vec![
            NAME,
            c(
                "Schedule",
                "string",
                "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.",
            ),
            c(
                "Timezone",
                "string",
                "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones.",
            ),
            c(
                "Suspend",
                "boolean",
                "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.",
            ),
            c(
                "Active",
                "integer",
                "A list of pointers to currently running jobs.",
            ),
            c(
                "Last Schedule",
                "string",
                "Information when was the last time the job was successfully scheduled.",
            ),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("", "persistentvolumes") => vec![
            NAME,
            c(
                "Capacity",
                "string",
                "capacity is the description of the persistent volume's resources and capacity.",
            ),
            c(
                "Access Modes",
                "string",
                "accessModes contains all ways the volume can be mounted.",
            ),
            c(
                "Reclaim Policy",
                "string",
                "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim.",
            ),
            c(
                "Status",
                "string",
                "phase indicates if a volume is available, bound to a claim, or released by a claim.",
            ),
            c(
                "Claim",
                "string",
                "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim.",
            ),
            c("StorageClass", "string", "StorageClass of the pv"),
            c(
                "VolumeAttributesClass",
                "string",
                "VolumeAttributesClass of the pv",
            ),
            c(
                "Reason",
                "string",
                "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI.",
            ),
            AGE,
            wide(
                "VolumeMode",
                "string",
                "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state.",
            ),
        ],
        ("", "persistentvolumeclaims") => vec![
            NAME,
            c(
                "Status",
                "string",
                "phase represents the current phase of PersistentVolumeClaim.",
            ),
            c(
                "Volume",
                "string",
                "volumeName is the binding reference to the PersistentVolume backing this claim.",
            ),
            c(
                "Capacity",
                "string",
                "capacity represents the actual resources of the underlying volume.",
            ),
            c(
                "Access Modes",
                "string",
                "accessModes contains the actual access modes the volume backing the PVC has.",
            ),
            c("StorageClass", "string", "StorageClass of the pvc"),
            c(
                "VolumeAttributesClass",
                "string",
                "VolumeAttributesClass of the pvc",
            ),
            AGE,
            wide(
                "VolumeMode",
                "string",
                "volumeMode defines what type of volume is required by the claim.",
            ),
        ],
        ("", "resourcequotas") => vec![
            NAME,
            AGE,
            c(
                "Request",
                "string",
                "Request represents a minimum amount of cpu/memory that a container may consume.",
            ),
            c(
                "Limit",
                "string",
                "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
            ),
        ],
        ("", "limitranges") => vec![
            NAME,
            c(
                "Created At",
                "date",
                "CreationTimestamp is a timestamp representing the server time when this object was created.",
            ),
        ],
        ("storage.k8s.io", "storageclasses") => vec![
            NAME,
            c(
                "Provisioner",
                "string",
                "provisioner indicates the type of the provisioner.",
            ),
            c(
                "ReclaimPolicy",
                "string",
                "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class.",
            ),
            c(
                "VolumeBindingMode",
                "string",
                "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.",
            ),
            c(
                "AllowVolumeExpansion",
                "string",
                "allowVolumeExpansion shows whether the storage class allow volume expand.",
            ),
            AGE,
        ],
        ("policy", "poddisruptionbudgets") => vec![
            NAME,
            c(
                "Min Available",
                "string",
                "The minimum number of pods that must be available.",
            ),
            c(
                "Max Unavailable",
                "string",
                "The maximum number of pods that may be unavailable.",
            ),
            c(
                "Allowed Disruptions",
                "integer",
                "Calculated number of pods that may be disrupted at this time.",
            ),
            AGE,
        ],
        ("scheduling.k8s.io", "priorityclasses") => vec![
            NAME,
            c(
                "Value",
                "integer",
                "value represents the integer value of this priority class.",
            ),
            c(
                "Global-Default",
                "boolean",
                "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class.",
            ),
            AGE,
            c(
                "PreemptionPolicy",
                "string",
                "preemptionPolicy is the Policy for preempting pods with lower priority.",
            ),
        ],
        ("autoscaling", "horizontalpodautoscalers") => vec![
            NAME,
            c(
                "Reference",
                "string",
                "reference to scaled resource; horizontal pod autoscaler will learn the current resource consumption and will set the desired number of pods by using its Scale subresource.",
            ),
            c(
                "Targets",
                "string",
                "metrics contains the specifications for which to use to calculate the desired replica count (the maximum replica count across all metrics will be used).",
            ),
            c(
                "MinPods",
                "string",
                "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down.",
            ),
            c(
                "MaxPods",
                "integer",
                "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up.",
            ),
            c(
                "Replicas",
                "integer",
                "currentReplicas is current number of replicas of pods managed by this autoscaler, as last seen by the autoscaler.",
            ),
            AGE,
        ],
        ("certificates.k8s.io", "certificatesigningrequests") => vec![
            NAME,
            AGE,
            c(
                "SignerName",
                "string",
                "Only used if a signer is set: the name of the signer.",
            ),
            c(
                "Requestor",
                "string",
                "Name of the user who requested the certificate.",
            ),
            c(
                "RequestedDuration",
                "string",
                "The requested duration of the certificate.",
            ),
            c(
                "Condition",
                "string",
                "The current state of the certificate signing request.",
            ),
        ],
        ("coordination.k8s.io", "leases") => vec![
            NAME,
            c(
                "Holder",
                "string",
                "holderIdentity contains the identity of the holder of a current lease.",
            ),
            AGE,
        ],
        ("networking.k8s.io", "ingresses") => vec![
            NAME,
            c("Class", "string", "The name of the IngressClass resource."),
            c(
                "Hosts",
                "string",
                "Hosts that incoming requests are matched against before the ingress rule",
            ),
            c(
                "Address",
                "string",
                "Address is a list containing ingress points for the load-balancer",
            ),
            c("Ports", "string", "Ports of TLS configurations that open"),
            AGE,
        ],
        ("discovery.k8s.io", "endpointslices") => vec![
            NAME,
            c(
                "AddressType",
                "string",
                "addressType specifies the type of address carried by this EndpointSlice.",
            ),
            c(
                "Ports",
                "string",
                "ports specifies the list of network ports exposed by each endpoint in this slice.",
            ),
            c(
                "Endpoints",
                "string",
                "endpoints is a list of unique endpoints in this slice.",
            ),
            AGE,
        ],
        ("apps", "controllerrevisions") => vec![
            NAME,
            c("Controller", "string", "Controller of the object"),
            c(
                "Revision",
                "integer",
                "Revision indicates the revision of the state represented by Data.",
            ),
            AGE,
        ],
        ("rbac.authorization.k8s.io", "roles" | "clusterroles") => vec![
            NAME,
            c(
                "Created At",
                "date",
                "CreationTimestamp is a timestamp representing the server time when this object was created.",
            ),
        ],
        ("rbac.authorization.k8s.io", "rolebindings" | "clusterrolebindings") => vec![
            NAME,
            c("Role", "string", "Role of the binding."),
            AGE,
            wide("Users", "string", "Users in the binding."),
            wide("Groups", "string", "Groups in the binding."),
            wide(
                "ServiceAccounts",
                "string",
                "ServiceAccounts in the binding.",
            ),
        ],
        _ => vec![NAME, AGE],
    }
}

fn get<'a>(obj: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = obj;
    for p in path {
        cur = cur.get(p)?;
    }
    if cur.is_null() { None } else { Some(cur) }
}

fn s<'a>(obj: &'a Value, path: &[&str]) -> &'a str {
    get(obj, path).and_then(Value::as_str).unwrap_or("")
}

fn int(obj: &Value, path: &[&str]) -> i64 {
    get(obj, path).and_then(Value::as_i64).unwrap_or(0)
}

fn list<'a>(obj: &'a Value, path: &[&str]) -> &'a [Value] {
    get(obj, path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn or_none(s: &str) -> String {
    if s.is_empty() {
        "<none>".into()
    } else {
        s.to_string()
    }
}

/// Seconds since the Unix epoch of an RFC 3339 time.
fn parse_time(t: &str) -> Option<i64> {
    t.parse::<jiff::Timestamp>().ok().map(|ts| ts.as_second())
}

/// Upstream's `duration.HumanDuration` of a number of seconds.
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{}h", hours / 24, h)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{}d", hours / 24 / 365, dy)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// `translateTimestampSince`: "<unknown>" for a missing time.
fn since(t: &str, now: i64) -> String {
    match parse_time(t) {
        Some(ts) => human_duration(now - ts),
        None => "<unknown>".into(),
    }
}

fn age(obj: &Value, now: i64) -> Value {
    json!(since(s(obj, &["metadata", "creationTimestamp"]), now))
}

/// `labels.FormatLabels`: `a=b,c=d` sorted, or `<none>`.
fn format_labels(m: Option<&Value>) -> String {
    let mut pairs: Vec<String> = m
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    pairs.sort();
    if pairs.is_empty() {
        "<none>".into()
    } else {
        pairs.join(",")
    }
}

/// `metav1.FormatLabelSelector`-like rendering of a selector object: "" when absent.
fn selector_string(sel: Option<&Value>) -> String {
    sel.and_then(|s| LabelSelector::from_object(s).ok())
        .map(|s| s.to_string())
        .unwrap_or_default()
}

/// Container names and images of a pod template, comma separated.
fn container_cells(obj: &Value) -> (Value, Value) {
    let cs = list(obj, &["spec", "template", "spec", "containers"]);
    let names: Vec<&str> = cs.iter().map(|c| s(c, &["name"])).collect();
    let images: Vec<&str> = cs.iter().map(|c| s(c, &["image"])).collect();
    (json!(names.join(",")), json!(images.join(",")))
}

fn has_condition(obj: &Value, ty: &str) -> bool {
    list(obj, &["status", "conditions"])
        .iter()
        .any(|c| s(c, &["type"]) == ty && s(c, &["status"]) == "True")
}

/// The cells of one object, matching [`columns`]; `now_unix` is "now" in Unix seconds, for
/// ages ("5m", "2d3h").
pub fn cells(info: &ResourceInfo, obj: &Value, now_unix: i64) -> Vec<Value> {
    let now = now_unix;
    let name = json!(s(obj, &["metadata", "name"]));
    match (info.group, info.plural) {
        ("", "pods") => pod_cells(obj, now),
        ("apps", "deployments") => {
            let (cs, is) = container_cells(obj);
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    int(obj, &["status", "readyReplicas"]),
                    get(obj, &["spec", "replicas"])
                        .and_then(Value::as_i64)
                        .unwrap_or(1)
                )),
                json!(int(obj, &["status", "updatedReplicas"])),
                json!(int(obj, &["status", "availableReplicas"])),
                age(obj, now),
                cs,
                is,
                json!(selector_string(get(obj, &["spec", "selector"]))),
            ]
        }
        ("apps", "replicasets") | ("", "replicationcontrollers") => {
            let (cs, is) = container_cells(obj);
            let selector = if info.plural == "replicasets" {
                selector_string(get(obj, &["spec", "selector"]))
            } else {
                format_labels(get(obj, &["spec", "selector"]))
            };
            vec![
                name,
                json!(
                    get(obj, &["spec", "replicas"])
                        .and_then(Value::as_i64)
                        .unwrap_or(1)
                ),
                json!(int(obj, &["status", "replicas"])),
                json!(int(obj, &["status", "readyReplicas"])),
                age(obj, now),
                cs,
                is,
                json!(selector),
            ]
        }
        ("", "services") => service_cells(obj, now),
        ("", "namespaces") => vec![name, json!(s(obj, &["status", "phase"])), age(obj, now)],
        ("", "nodes") => node_cells(obj, now),
        ("", "configmaps") => {
            let n = ["data", "binaryData"]
                .iter()
                .filter_map(|k| get(obj, &[k]).and_then(Value::as_object))
                .map(|m| m.len())
                .sum::<usize>();
            vec![name, json!(n), age(obj, now)]
        }
        ("", "secrets") => {
            let n = get(obj, &["data"])
                .and_then(Value::as_object)
                .map_or(0, |m| m.len());
            vec![name, json!(s(obj, &["type"])), json!(n), age(obj, now)]
        }
        ("", "endpoints") => vec![name, json!(format_endpoints(obj)), age(obj, now)],
        ("", "events") => event_cells(obj, now),
        ("", "serviceaccounts") => {
            vec![name, json!(list(obj, &["secrets"]).len()), age(obj, now)]
        }
        ("apps", "daemonsets") => {
            let (cs, is) = container_cells(obj);
            vec![
                name,
                json!(int(obj, &["status", "desiredNumberScheduled"])),
                json!(int(obj, &["status", "currentNumberScheduled"])),
                json!(int(obj, &["status", "numberReady"])),
                json!(int(obj, &["status", "updatedNumberScheduled"])),
                json!(int(obj, &["status", "numberAvailable"])),
                json!(format_labels(get(
                    obj,
                    &["spec", "template", "spec", "nodeSelector"]
                ))),
                age(obj, now),
                cs,
                is,
                json!(selector_string(get(obj, &["spec", "selector"]))),
            ]
        }
        ("apps", "statefulsets") => {
            let (cs, is) = container_cells(obj);
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    int(obj, &["status", "readyReplicas"]),
                    get(obj, &["spec", "replicas"])
                        .and_then(Value::as_i64)
                        .unwrap_or(1)
                )),
                age(obj, now),
                cs,
                is,
            ]
        }
        ("batch", "jobs") => job_cells(obj, now),
        ("batch", "cronjobs") => cronjob_cells(obj, now),
        ("", "persistentvolumes") => pv_cells(obj, now),
        ("", "persistentvolumeclaims") => pvc_cells(obj, now),
        ("", "resourcequotas") => {
            let (request, limit) = quota_columns(obj);
            vec![name, age(obj, now), json!(request), json!(limit)]
        }
        ("", "limitranges") => vec![name, json!(s(obj, &["metadata", "creationTimestamp"]))],
        ("storage.k8s.io", "storageclasses") => {
            let default_class = [
                "storageclass.kubernetes.io/is-default-class",
                "storageclass.beta.kubernetes.io/is-default-class",
            ]
            .iter()
            .any(|k| s(obj, &["metadata", "annotations", k]) == "true");
            let shown = if default_class {
                format!("{} (default)", s(obj, &["metadata", "name"]))
            } else {
                s(obj, &["metadata", "name"]).to_string()
            };
            let or = |key: &str, dflt: &str| match s(obj, &[key]) {
                "" => dflt.to_string(),
                v => v.to_string(),
            };
            vec![
                json!(shown),
                json!(s(obj, &["provisioner"])),
                json!(or("reclaimPolicy", "Delete")),
                json!(or("volumeBindingMode", "Immediate")),
                json!(
                    get(obj, &["allowVolumeExpansion"])
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                ),
                age(obj, now),
            ]
        }
        ("policy", "poddisruptionbudgets") => {
            let shown = |key: &str| match get(obj, &["spec", key]) {
                Some(Value::String(v)) => v.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => "N/A".into(),
            };
            vec![
                name,
                json!(shown("minAvailable")),
                json!(shown("maxUnavailable")),
                json!(int(obj, &["status", "disruptionsAllowed"])),
                age(obj, now),
            ]
        }
        ("scheduling.k8s.io", "priorityclasses") => vec![
            name,
            json!(int(obj, &["value"])),
            json!(
                get(obj, &["globalDefault"])
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
            ),
            age(obj, now),
            json!(match s(obj, &["preemptionPolicy"]) {
                "" => "<unset>",
                p => p,
            }),
        ],
        ("autoscaling", "horizontalpodautoscalers") => {
            let v2 = if info.version == "v1" {
                crate::strategy::convert(info, obj.clone(), "v2")
            } else {
                obj.clone()
            };
            let min = get(&v2, &["spec", "minReplicas"])
                .and_then(Value::as_i64)
                .map_or("<unset>".to_string(), |m| m.to_string());
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    s(&v2, &["spec", "scaleTargetRef", "kind"]),
                    s(&v2, &["spec", "scaleTargetRef", "name"])
                )),
                json!(format_hpa_metrics(&v2)),
                json!(min),
                json!(int(&v2, &["spec", "maxReplicas"])),
                json!(int(&v2, &["status", "currentReplicas"])),
                age(obj, now),
            ]
        }
        ("certificates.k8s.io", "certificatesigningrequests") => csr_cells(obj, now),
        ("coordination.k8s.io", "leases") => {
            vec![
                name,
                json!(s(obj, &["spec", "holderIdentity"])),
                age(obj, now),
            ]
        }
        ("networking.k8s.io", "ingresses") => ingress_cells(obj, now),
        ("discovery.k8s.io", "endpointslices") => {
            let ports: Vec<String> = list(obj, &["ports"])
                .iter()
                .map(
                    |p| match (get(p, &["port"]).and_then(Value::as_i64), get(p, &["name"])) {
                        (Some(n), _) => n.to_string(),
                        (None, Some(Value::String(n))) => n.clone(),
                        _ => "*".into(),
                    },
                )
                .collect();
            let addrs: Vec<String> = list(obj, &["endpoints"])
                .iter()
                .flat_map(|e| list(e, &["addresses"]))
                .map(|a| a.as_str().unwrap_or("").to_string())
                .collect();
            vec![
                name,
                json!(s(obj, &["addressType"])),
                json!(with_more(&ports, 3, "<unset>")),
                json!(with_more(&addrs, 3, "<unset>")),
                age(obj, now),
            ]
        }
        ("apps", "controllerrevisions") => {
            let controller = list(obj, &["metadata", "ownerReferences"])
                .iter()
                .find(|o| get(o, &["controller"]).and_then(Value::as_bool) == Some(true))
                .map(|o| {
                    let group = crate::strategy::split_api_version(s(o, &["apiVersion"])).0;
                    let kind = s(o, &["kind"]).to_lowercase();
                    let gk = if group.is_empty() {
                        kind
                    } else {
                        format!("{kind}.{group}")
                    };
                    format!("{gk}/{}", s(o, &["name"]))
                })
                .unwrap_or_else(|| "<none>".into());
            vec![
                name,
                json!(controller),
                json!(int(obj, &["revision"])),
                age(obj, now),
            ]
        }
        ("rbac.authorization.k8s.io", "roles" | "clusterroles") => {
            vec![name, json!(s(obj, &["metadata", "creationTimestamp"]))]
        }
        ("rbac.authorization.k8s.io", "rolebindings" | "clusterrolebindings") => {
            let mut users = Vec::new();
            let mut groups = Vec::new();
            let mut sas = Vec::new();
            for sub in list(obj, &["subjects"]) {
                match s(sub, &["kind"]) {
                    "User" => users.push(s(sub, &["name"]).to_string()),
                    "Group" => groups.push(s(sub, &["name"]).to_string()),
                    "ServiceAccount" => {
                        sas.push(format!("{}/{}", s(sub, &["namespace"]), s(sub, &["name"])))
                    }
                    _ => {}
                }
            }
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    s(obj, &["roleRef", "kind"]),
                    s(obj, &["roleRef", "name"])
                )),
                age(obj, now),
                json!(users.join(", ")),
                json!(groups.join(", ")),
                json!(sas.join(", ")),
            ]
        }
        _ => vec![name, age(obj, now)],
    }
}

/// `a,b,c + N more...` or `empty` when there is nothing.
fn with_more(items: &[String], max: usize, empty: &str) -> String {
    if items.is_empty() {
        return empty.into();
    }
    let shown = items[..items.len().min(max)].join(",");
    if items.len() > max {
        format!("{shown} + {} more...", items.len() - max)
    } else {
        shown
    }
}

/// Upstream's `printPod`.
fn pod_cells(pod: &Value, now: i64) -> Vec<Value> {
    let spec_containers = list(pod, &["spec", "containers"]);
    let init_specs = list(pod, &["spec", "initContainers"]);
    let restartable = |name: &str| {
        init_specs
            .iter()
            .any(|c| s(c, &["name"]) == name && s(c, &["restartPolicy"]) == "Always")
    };
    let mut total = spec_containers.len();
    total += init_specs
        .iter()
        .filter(|c| s(c, &["restartPolicy"]) == "Always")
        .count();
    let mut ready = 0;
    let mut restarts = 0i64;
    let mut sidecar_restarts = 0i64;
    let mut last_restart: Option<i64> = None;
    let mut last_sidecar_restart: Option<i64> = None;
    let phase = s(pod, &["status", "phase"]);
    let mut reason = phase.to_string();
    if !s(pod, &["status", "reason"]).is_empty() {
        reason = s(pod, &["status", "reason"]).to_string();
    }
    for cond in list(pod, &["status", "conditions"]) {
        if s(cond, &["type"]) == "PodScheduled" && s(cond, &["reason"]) == "SchedulingGated" {
            reason = "SchedulingGated".into();
        }
    }
    let finished_at = |st: &Value| {
        get(st, &["lastState", "terminated", "finishedAt"])
            .and_then(Value::as_str)
            .and_then(parse_time)
    };
    let mut initializing = false;
    for (i, st) in list(pod, &["status", "initContainerStatuses"])
        .iter()
        .enumerate()
    {
        let rc = int(st, &["restartCount"]);
        restarts += rc;
        if let Some(t) = finished_at(st) {
            last_restart = last_restart.max(Some(t));
        }
        let sidecar = restartable(s(st, &["name"]));
        if sidecar {
            sidecar_restarts += rc;
            if let Some(t) = finished_at(st) {
                last_sidecar_restart = last_sidecar_restart.max(Some(t));
            }
        }
        let terminated = get(st, &["state", "terminated"]);
        let waiting_reason = s(st, &["state", "waiting", "reason"]);
        if terminated.is_some_and(|t| int(t, &["exitCode"]) == 0) {
            continue;
        }
        if sidecar && get(st, &["started"]).and_then(Value::as_bool) == Some(true) {
            if get(st, &["ready"]).and_then(Value::as_bool) == Some(true) {
                ready += 1;
            }
            continue;
        }
        if let Some(t) = terminated {
            reason = if s(t, &["reason"]).is_empty() {
                if int(t, &["signal"]) != 0 {
                    format!("Init:Signal:{}", int(t, &["signal"]))
                } else {
                    format!("Init:ExitCode:{}", int(t, &["exitCode"]))
                }
            } else {
                format!("Init:{}", s(t, &["reason"]))
            };
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            reason = format!("Init:{waiting_reason}");
        } else {
            reason = format!("Init:{}/{}", i, init_specs.len());
        }
        initializing = true;
        break;
    }
    let initialized = has_condition(pod, "Initialized");
    if !initializing || initialized {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for st in list(pod, &["status", "containerStatuses"]).iter().rev() {
            restarts += int(st, &["restartCount"]);
            if let Some(t) = finished_at(st) {
                last_restart = last_restart.max(Some(t));
            }
            let waiting = s(st, &["state", "waiting", "reason"]);
            let terminated = get(st, &["state", "terminated"]);
            if !waiting.is_empty() {
                reason = waiting.to_string();
            } else if let Some(t) = terminated {
                reason = if !s(t, &["reason"]).is_empty() {
                    s(t, &["reason"]).to_string()
                } else if int(t, &["signal"]) != 0 {
                    format!("Signal:{}", int(t, &["signal"]))
                } else {
                    format!("ExitCode:{}", int(t, &["exitCode"]))
                };
            } else if get(st, &["ready"]).and_then(Value::as_bool) == Some(true)
                && get(st, &["state", "running"]).is_some()
            {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = if has_condition(pod, "Ready") {
                "Running".into()
            } else {
                "NotReady".into()
            };
        }
    }
    let deleting = get(pod, &["metadata", "deletionTimestamp"]).is_some();
    if deleting && s(pod, &["status", "reason"]) == "NodeLost" {
        reason = "Unknown".into();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".into();
    }
    let restarts_str = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", human_duration(now - t)),
        _ => restarts.to_string(),
    };
    let ip = list(pod, &["status", "podIPs"])
        .first()
        .map(|p| s(p, &["ip"]))
        .filter(|ip| !ip.is_empty())
        .unwrap_or_else(|| s(pod, &["status", "podIP"]));
    let gates = list(pod, &["spec", "readinessGates"]);
    let gates_str = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let t = gates
            .iter()
            .filter(|g| {
                let ty = s(g, &["conditionType"]);
                list(pod, &["status", "conditions"])
                    .iter()
                    .find(|c| s(c, &["type"]) == ty)
                    .is_some_and(|c| s(c, &["status"]) == "True")
            })
            .count();
        format!("{t}/{}", gates.len())
    };
    vec![
        json!(s(pod, &["metadata", "name"])),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_str),
        age(pod, now),
        json!(or_none(ip)),
        json!(or_none(s(pod, &["spec", "nodeName"]))),
        json!(or_none(s(pod, &["status", "nominatedNodeName"]))),
        json!(gates_str),
    ]
}

fn service_cells(svc: &Value, now: i64) -> Vec<Value> {
    let ty = s(svc, &["spec", "type"]);
    let cluster_ip = list(svc, &["spec", "clusterIPs"])
        .first()
        .and_then(Value::as_str)
        .unwrap_or_else(|| s(svc, &["spec", "clusterIP"]));
    let external_ips: Vec<&str> = list(svc, &["spec", "externalIPs"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let external = match ty {
        "ClusterIP" | "NodePort" | "" => {
            if external_ips.is_empty() {
                "<none>".to_string()
            } else {
                external_ips.join(",")
            }
        }
        "LoadBalancer" => {
            let mut all: Vec<String> = list(svc, &["status", "loadBalancer", "ingress"])
                .iter()
                .map(|i| {
                    let ip = s(i, &["ip"]);
                    if ip.is_empty() {
                        s(i, &["hostname"])
                    } else {
                        ip
                    }
                    .to_string()
                })
                .filter(|x| !x.is_empty())
                .collect();
            all.extend(external_ips.iter().map(|s| s.to_string()));
            if all.is_empty() {
                "<pending>".into()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => s(svc, &["spec", "externalName"]).to_string(),
        _ => "<unknown>".into(),
    };
    let ports: Vec<String> = list(svc, &["spec", "ports"])
        .iter()
        .map(|p| {
            let port = int(p, &["port"]);
            let proto = s(p, &["protocol"]);
            let np = int(p, &["nodePort"]);
            if np > 0 {
                format!("{port}:{np}/{proto}")
            } else {
                format!("{port}/{proto}")
            }
        })
        .collect();
    vec![
        json!(s(svc, &["metadata", "name"])),
        json!(ty),
        json!(or_none(cluster_ip)),
        json!(external),
        json!(or_none(&ports.join(","))),
        age(svc, now),
        json!(format_labels(get(svc, &["spec", "selector"]))),
    ]
}

fn node_cells(node: &Value, now: i64) -> Vec<Value> {
    let mut status: Vec<String> = list(node, &["status", "conditions"])
        .iter()
        .filter(|c| s(c, &["type"]) == "Ready")
        .take(1)
        .map(|c| {
            if s(c, &["status"]) == "True" {
                "Ready".to_string()
            } else {
                "NotReady".to_string()
            }
        })
        .collect();
    if status.is_empty() {
        status.push("Unknown".into());
    }
    if get(node, &["spec", "unschedulable"]).and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled".into());
    }
    let mut roles = std::collections::BTreeSet::new();
    for (k, v) in get(node, &["metadata", "labels"])
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
            if !role.is_empty() {
                roles.insert(role.to_string());
            }
        } else if k == "kubernetes.io/role"
            && let Some(r) = v.as_str().filter(|r| !r.is_empty())
        {
            roles.insert(r.to_string());
        }
    }
    let roles: Vec<String> = roles.into_iter().collect();
    let address = |ty: &str| {
        list(node, &["status", "addresses"])
            .iter()
            .find(|a| s(a, &["type"]) == ty)
            .map(|a| s(a, &["address"]).to_string())
            .unwrap_or_else(|| "<none>".into())
    };
    let info = |k: &str| {
        let v = s(node, &["status", "nodeInfo", k]);
        if v.is_empty() {
            "<unknown>".to_string()
        } else {
            v.to_string()
        }
    };
    vec![
        json!(s(node, &["metadata", "name"])),
        json!(status.join(",")),
        json!(or_none(&roles.join(","))),
        age(node, now),
        json!(s(node, &["status", "nodeInfo", "kubeletVersion"])),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(info("osImage")),
        json!(info("kernelVersion")),
        json!(info("containerRuntimeVersion")),
    ]
}

/// Upstream's `formatEndpoints` with no port filter.
fn format_endpoints(ep: &Value) -> String {
    let subsets = list(ep, &["subsets"]);
    if subsets.is_empty() {
        return "<none>".into();
    }
    let max = 3;
    let mut shown = Vec::new();
    let mut count = 0;
    let mut more = false;
    for ss in subsets {
        let addrs = list(ss, &["addresses"]);
        let ports = list(ss, &["ports"]);
        if ports.is_empty() {
            count += addrs.len();
            for a in addrs {
                if shown.len() == max {
                    more = true;
                    break;
                }
                shown.push(s(a, &["ip"]).to_string());
            }
            continue;
        }
        for p in ports {
            count += addrs.len();
            for a in addrs {
                if shown.len() == max {
                    more = true;
                    break;
                }
                let ip = s(a, &["ip"]);
                let port = int(p, &["port"]);
                if ip.contains(':') {
                    shown.push(format!("[{ip}]:{port}"));
                } else {
                    shown.push(format!("{ip}:{port}"));
                }
            }
        }
    }
    let ret = shown.join(",");
    if more {
        format!("{ret} + {} more...", count - max)
    } else if ret.is_empty() {
        "<none>".into()
    } else {
        ret
    }
}

fn event_cells(ev: &Value, now: i64) -> Vec<Value> {
    let micro = |path: &[&str]| {
        get(ev, path)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let first = match s(ev, &["firstTimestamp"]) {
        "" => since(&micro(&["eventTime"]), now),
        t => since(t, now),
    };
    let mut last = match s(ev, &["lastTimestamp"]) {
        "" => first.clone(),
        t => since(t, now),
    };
    let mut count = int(ev, &["count"]);
    if get(ev, &["series"]).is_some() {
        last = since(&micro(&["series", "lastObservedTime"]), now);
        count = int(ev, &["series", "count"]);
    } else if count == 0 {
        count = 1;
    }
    let kind = s(ev, &["involvedObject", "kind"]).to_lowercase();
    let obj_name = s(ev, &["involvedObject", "name"]);
    let target = if obj_name.is_empty() {
        kind
    } else {
        format!("{kind}/{obj_name}")
    };
    let component = s(ev, &["source", "component"]);
    let source = if component.is_empty() {
        s(ev, &["reportingComponent"]).to_string()
    } else {
        let host = s(ev, &["source", "host"]);
        if host.is_empty() {
            component.to_string()
        } else {
            format!("{component}, {host}")
        }
    };
    vec![
        json!(last),
        json!(s(ev, &["type"])),
        json!(s(ev, &["reason"])),
        json!(target),
        json!(s(ev, &["involvedObject", "fieldPath"])),
        json!(source),
        json!(s(ev, &["message"]).trim()),
        json!(first),
        json!(count.to_string()),
        json!(s(ev, &["metadata", "name"])),
    ]
}

fn job_cells(job: &Value, now: i64) -> Vec<Value> {
    let succeeded = int(job, &["status", "succeeded"]);
    let completions = match get(job, &["spec", "completions"]).and_then(Value::as_i64) {
        Some(c) => format!("{succeeded}/{c}"),
        None => {
            let p = int(job, &["spec", "parallelism"]);
            if p > 1 {
                format!("{succeeded}/1 of {p}")
            } else {
                format!("{succeeded}/1")
            }
        }
    };
    let start = parse_time(s(job, &["status", "startTime"]));
    let done = parse_time(s(job, &["status", "completionTime"]));
    let duration = match (start, done) {
        (None, _) => String::new(),
        (Some(st), None) => human_duration(now - st),
        (Some(st), Some(d)) => human_duration(d - st),
    };
    let status = if has_condition(job, "Complete") {
        "Complete"
    } else if has_condition(job, "Failed") {
        "Failed"
    } else if get(job, &["metadata", "deletionTimestamp"]).is_some() {
        "Terminating"
    } else if has_condition(job, "Suspended") {
        "Suspended"
    } else if has_condition(job, "FailureTarget") {
        "FailureTarget"
    } else if has_condition(job, "SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    };
    let (cs, is) = container_cells(job);
    vec![
        json!(s(job, &["metadata", "name"])),
        json!(status),
        json!(completions),
        json!(duration),
        age(job, now),
        cs,
        is,
        json!(selector_string(get(job, &["spec", "selector"]))),
    ]
}

fn cronjob_cells(cj: &Value, now: i64) -> Vec<Value> {
    let last = match s(cj, &["status", "lastScheduleTime"]) {
        "" => "<none>".to_string(),
        t => since(t, now),
    };
    let suspend = match get(cj, &["spec", "suspend"]).and_then(Value::as_bool) {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    };
    let job_spec = get(cj, &["spec", "jobTemplate"]).unwrap_or(&Value::Null);
    let (cs, is) = container_cells(job_spec);
    vec![
        json!(s(cj, &["metadata", "name"])),
        json!(s(cj, &["spec", "schedule"])),
        json!(or_none(s(cj, &["spec", "timeZone"]))),
        json!(suspend),
        json!(list(cj, &["status", "active"]).len()),
        json!(last),
        age(cj, now),
        cs,
        is,
        json!(or_none(&selector_string(get(
            job_spec,
            &["spec", "selector"]
        )))),
    ]
}

/// Upstream's `GetAccessModesAsString`: the short names in a fixed order, each once.
fn access_modes(modes: &[Value]) -> String {
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(long, _)| modes.iter().any(|m| m == long))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// A quantity as Kubernetes prints it (canonical form), "0" when absent.
fn quantity(v: Option<&Value>) -> String {
    v.and_then(crate::Quantity::from_json)
        .map_or_else(|| "0".into(), |q| q.to_string())
}

/// The storage class of a volume or claim: the beta annotation wins over the field.
fn storage_class(obj: &Value) -> String {
    match s(
        obj,
        &[
            "metadata",
            "annotations",
            "volume.beta.kubernetes.io/storage-class",
        ],
    ) {
        "" => s(obj, &["spec", "storageClassName"]).to_string(),
        class => class.to_string(),
    }
}

fn unset_or(obj: &Value, path: &[&str]) -> String {
    match s(obj, path) {
        "" => "<unset>".into(),
        v => v.to_string(),
    }
}

fn phase_or_terminating(obj: &Value) -> String {
    if get(obj, &["metadata", "deletionTimestamp"]).is_some() {
        "Terminating".into()
    } else {
        s(obj, &["status", "phase"]).to_string()
    }
}

fn pv_cells(pv: &Value, now: i64) -> Vec<Value> {
    let claim = match get(pv, &["spec", "claimRef"]) {
        Some(r) => format!("{}/{}", s(r, &["namespace"]), s(r, &["name"])),
        None => String::new(),
    };
    vec![
        json!(s(pv, &["metadata", "name"])),
        json!(quantity(get(pv, &["spec", "capacity", "storage"]))),
        json!(access_modes(list(pv, &["spec", "accessModes"]))),
        json!(s(pv, &["spec", "persistentVolumeReclaimPolicy"])),
        json!(phase_or_terminating(pv)),
        json!(claim),
        json!(storage_class(pv)),
        json!(unset_or(pv, &["spec", "volumeAttributesClassName"])),
        json!(s(pv, &["status", "reason"])),
        age(pv, now),
        json!(unset_or(pv, &["spec", "volumeMode"])),
    ]
}

/// A claim shows its capacity and access modes only once bound to a volume.
fn pvc_cells(pvc: &Value, now: i64) -> Vec<Value> {
    let volume = s(pvc, &["spec", "volumeName"]);
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            quantity(get(pvc, &["status", "capacity", "storage"])),
            access_modes(list(pvc, &["status", "accessModes"])),
        )
    };
    vec![
        json!(s(pvc, &["metadata", "name"])),
        json!(phase_or_terminating(pvc)),
        json!(volume),
        json!(capacity),
        json!(modes),
        json!(storage_class(pvc)),
        json!(unset_or(pvc, &["spec", "volumeAttributesClassName"])),
        age(pvc, now),
        json!(unset_or(pvc, &["spec", "volumeMode"])),
    ]
}

/// The Request and Limit cells of a ResourceQuota: `name: used/hard` for every resource in
/// `status.hard`, sorted; `limits.*` resources go to Limit.
fn quota_columns(quota: &Value) -> (String, String) {
    let hard = get(quota, &["status", "hard"]).and_then(Value::as_object);
    let mut names: Vec<&String> = hard.into_iter().flat_map(|h| h.keys()).collect();
    names.sort();
    let mut request = Vec::new();
    let mut limit = Vec::new();
    for name in names {
        let cell = format!(
            "{name}: {}/{}",
            quantity(get(quota, &["status", "used", name])),
            quantity(get(quota, &["status", "hard", name]))
        );
        if name.split('.').next() == Some("limits") && name.contains('.') {
            limit.push(cell);
        } else {
            request.push(cell);
        }
    }
    (request.join(", "), limit.join(", "))
}

/// Upstream's `formatHPAMetrics` over a v2 object.
fn format_hpa_metrics(hpa: &Value) -> String {
    let specs = list(hpa, &["spec", "metrics"]);
    if specs.is_empty() {
        return "<none>".into();
    }
    let statuses = list(hpa, &["status", "currentMetrics"]);
    let quantity = |v: Option<&Value>| match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "<unknown>".into(),
    };
    let mut items = Vec::new();
    for (i, m) in specs.iter().enumerate() {
        let st = statuses.get(i);
        let item = match s(m, &["type"]) {
            "Resource" | "ContainerResource" => {
                let key = if s(m, &["type"]) == "Resource" {
                    "resource"
                } else {
                    "containerResource"
                };
                let rname = s(m, &[key, "name"]);
                if let Some(target) = get(m, &[key, "target", "averageValue"]) {
                    let cur =
                        quantity(st.and_then(|st| get(st, &[key, "current", "averageValue"])));
                    format!("{rname}: {cur}/{}", quantity(Some(target)))
                } else {
                    let cur = st
                        .and_then(|st| get(st, &[key, "current", "averageUtilization"]))
                        .and_then(Value::as_i64)
                        .map_or("<unknown>".to_string(), |u| format!("{u}%"));
                    let target = get(m, &[key, "target", "averageUtilization"])
                        .and_then(Value::as_i64)
                        .map_or("<auto>".to_string(), |u| format!("{u}%"));
                    format!("{rname}: {cur}/{target}")
                }
            }
            "Pods" => {
                let cur = quantity(st.and_then(|st| get(st, &["pods", "current", "averageValue"])));
                format!(
                    "{cur}/{}",
                    quantity(get(m, &["pods", "target", "averageValue"]))
                )
            }
            ty @ ("Object" | "External") => {
                let key = if ty == "Object" { "object" } else { "external" };
                let (tkey, ckey) = if get(m, &[key, "target", "averageValue"]).is_some() {
                    ("averageValue", "averageValue")
                } else {
                    ("value", "value")
                };
                let cur = quantity(st.and_then(|st| get(st, &[key, "current", ckey])));
                let target = quantity(get(m, &[key, "target", tkey]));
                if tkey == "averageValue" {
                    format!("{cur}/{target} (avg)")
                } else {
                    format!("{cur}/{target}")
                }
            }
            _ => "<unknown type>".into(),
        };
        items.push(item);
    }
    let max = 2;
    if items.len() > max {
        format!(
            "{} + {} more...",
            items[..max].join(", "),
            items.len() - max
        )
    } else {
        items.join(", ")
    }
}

fn ingress_cells(ing: &Value, now: i64) -> Vec<Value> {
    let class = s(ing, &["spec", "ingressClassName"]);
    let hosts: Vec<String> = list(ing, &["spec", "rules"])
        .iter()
        .map(|r| s(r, &["host"]).to_string())
        .filter(|h| !h.is_empty())
        .collect();
    let hosts = if hosts.is_empty() {
        "*".to_string()
    } else {
        let max = 4;
        let shown = hosts[..hosts.len().min(max)].join(",");
        if hosts.len() > max {
            format!("{shown} + {} more...", hosts.len() - max)
        } else {
            shown
        }
    };
    let address: Vec<String> = list(ing, &["status", "loadBalancer", "ingress"])
        .iter()
        .map(|i| {
            let ip = s(i, &["ip"]);
            if ip.is_empty() {
                s(i, &["hostname"])
            } else {
                ip
            }
            .to_string()
        })
        .filter(|x| !x.is_empty())
        .collect();
    let ports = if list(ing, &["spec", "tls"]).is_empty() {
        "80"
    } else {
        "80, 443"
    };
    vec![
        json!(s(ing, &["metadata", "name"])),
        json!(if class.is_empty() { "<none>" } else { class }),
        json!(hosts),
        json!(address.join(",")),
        json!(ports),
        age(ing, now),
    ]
}

#[cfg(test)]
mod tests;

/// A CertificateSigningRequest's row, as kubectl prints it: the signer, who asked, the
/// requested duration (`<none>` without one) and the state: `Denied`, `Approved` or
/// `Pending`, then `,Failed` and `,Issued` when those apply.
fn csr_cells(obj: &Value, now: i64) -> Vec<Value> {
    let duration = get(obj, &["spec", "expirationSeconds"])
        .and_then(Value::as_i64)
        .map_or("<none>".to_string(), human_duration);
    let has = |t: &str| {
        list(obj, &["status", "conditions"])
            .iter()
            .any(|c| s(c, &["type"]) == t)
    };
    let mut condition = if has("Denied") {
        "Denied"
    } else if has("Approved") {
        "Approved"
    } else {
        "Pending"
    }
    .to_string();
    if has("Failed") {
        condition.push_str(",Failed");
    }
    if !s(obj, &["status", "certificate"]).is_empty() {
        condition.push_str(",Issued");
    }
    vec![
        json!(s(obj, &["metadata", "name"])),
        age(obj, now),
        json!(s(obj, &["spec", "signerName"])),
        json!(s(obj, &["spec", "username"])),
        json!(duration),
        json!(condition),
    ]
}
