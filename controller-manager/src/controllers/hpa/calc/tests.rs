use super::*;

fn now() -> Timestamp {
    "2026-01-01T12:00:00Z".parse().unwrap()
}

fn ago(secs: i64) -> Timestamp {
    now() - jiff::SignedDuration::from_secs(secs)
}

/// A Running pod, ready for 10 minutes, started 20 minutes ago, requesting `request` millis.
fn pod(name: &str, request: i64) -> PodFacts {
    PodFacts {
        name: name.into(),
        phase: "Running".into(),
        deleting: false,
        ready: Some((Status::True, ago(600))),
        start_time: Some(ago(1200)),
        request_milli: Ok(request),
    }
}

fn sample(milli: i64) -> Sample {
    Sample {
        milli,
        timestamp: now(),
        window: Duration::from_secs(15),
    }
}

fn metrics(usage: &[(&str, i64)]) -> HashMap<String, Sample> {
    usage
        .iter()
        .map(|(p, m)| (p.to_string(), sample(*m)))
        .collect()
}

struct Case {
    name: &'static str,
    current: i32,
    resource: Resource,
    target: Target,
    pods: Vec<PodFacts>,
    usage: Vec<(&'static str, i64)>,
    want: Result<i32, &'static str>,
}

fn case(
    name: &'static str,
    current: i32,
    target: Target,
    pods: Vec<PodFacts>,
    usage: Vec<(&'static str, i64)>,
    want: Result<i32, &'static str>,
) -> Case {
    Case {
        name,
        current,
        resource: Resource::Cpu,
        target,
        pods,
        usage,
        want,
    }
}

fn pending(name: &str) -> PodFacts {
    PodFacts {
        phase: "Pending".into(),
        ready: None,
        start_time: None,
        ..pod(name, 100)
    }
}

#[test]
fn replica_calculation() {
    let u50 = Target::Utilization(50);
    let mut cases = vec![
        case(
            "usage at 4x the target scales 2 pods to 8",
            2,
            u50,
            vec![pod("a", 100), pod("b", 100)],
            vec![("a", 200), ("b", 200)],
            Ok(8),
        ),
        case(
            "within the 10% tolerance nothing changes",
            2,
            u50,
            vec![pod("a", 100), pod("b", 100)],
            vec![("a", 54), ("b", 50)],
            Ok(2),
        ),
        case(
            "just outside the tolerance scales",
            2,
            u50,
            vec![pod("a", 100), pod("b", 100)],
            vec![("a", 56), ("b", 56)],
            Ok(3),
        ),
        case(
            "low usage scales 4 pods down to 1",
            4,
            u50,
            vec![pod("a", 100), pod("b", 100), pod("c", 100), pod("d", 100)],
            vec![("a", 10), ("b", 10), ("c", 10), ("d", 10)],
            Ok(1),
        ),
        case(
            "on a scale-down a pod without metrics counts as using its whole request",
            4,
            u50,
            vec![pod("a", 100), pod("b", 100), pod("c", 100), pod("d", 100)],
            vec![("a", 10), ("b", 10), ("c", 10)],
            Ok(3),
        ),
        case(
            "on a scale-up a pod without metrics counts as using nothing",
            2,
            u50,
            vec![pod("a", 100), pod("b", 100)],
            vec![("a", 200)],
            Ok(4),
        ),
        case(
            "a pod without metrics can cancel a scale-down",
            2,
            u50,
            vec![pod("a", 100), pod("b", 100)],
            vec![("a", 30)],
            Ok(2),
        ),
        case(
            "pending pods count as using nothing on a scale-up",
            3,
            u50,
            vec![pod("a", 100), pending("b"), pending("c")],
            vec![("a", 200)],
            Ok(4),
        ),
        case(
            "deleted and failed pods are ignored",
            3,
            u50,
            vec![
                pod("a", 100),
                PodFacts {
                    deleting: true,
                    ..pod("b", 100)
                },
                PodFacts {
                    phase: "Failed".into(),
                    ..pod("c", 100)
                },
            ],
            vec![("a", 100), ("b", 1000), ("c", 1000)],
            Ok(2),
        ),
        case(
            "average value: 3 pods at 3x the per-pod target",
            3,
            Target::AverageValue(100),
            vec![pod("a", 0), pod("b", 0), pod("c", 0)],
            vec![("a", 300), ("b", 300), ("c", 300)],
            Ok(9),
        ),
        case(
            "average value: a missing pod counts as at the target on a scale-down",
            2,
            Target::AverageValue(100),
            vec![pod("a", 0), pod("b", 0)],
            vec![("a", 20)],
            Ok(2),
        ),
        case(
            "no pods",
            1,
            u50,
            vec![],
            vec![],
            Err("no pods returned by selector while calculating replica count"),
        ),
        case(
            "no metrics",
            1,
            u50,
            vec![pod("a", 100)],
            vec![],
            Err("did not receive metrics for targeted pods (pods might be unready)"),
        ),
        case(
            "a container without a request",
            1,
            u50,
            vec![PodFacts {
                request_milli: Err("burn".into()),
                ..pod("a", 0)
            }],
            vec![("a", 100)],
            Err("missing request for cpu in container burn of Pod a"),
        ),
    ];
    cases.push(case(
        "above a 100% target a pod without metrics counts as using the target",
        4,
        Target::Utilization(200),
        vec![pod("a", 100), pod("b", 100), pod("c", 100), pod("d", 100)],
        vec![("a", 20), ("b", 20), ("c", 20)],
        Ok(2),
    ));
    cases.push(case(
        "Ready=Unknown is not unready",
        2,
        u50,
        vec![
            pod("a", 100),
            PodFacts {
                ready: Some((Status::Unknown, ago(10))),
                ..pod("b", 100)
            },
        ],
        vec![("a", 200), ("b", 200)],
        Ok(8),
    ));
    // Readiness only matters for CPU.
    let starting = PodFacts {
        ready: Some((Status::True, ago(10))),
        start_time: Some(ago(20)),
        ..pod("b", 100)
    };
    cases.push(case(
        "a CPU sample from before a full window of readiness is left out",
        2,
        u50,
        vec![pod("a", 100), starting.clone()],
        vec![("a", 10), ("b", 500)],
        Ok(1),
    ));
    cases.push(Case {
        resource: Resource::Memory,
        ..case(
            "memory counts every running pod",
            2,
            u50,
            vec![pod("a", 100), starting],
            vec![("a", 10), ("b", 500)],
            Ok(11),
        )
    });
    let never_ready = PodFacts {
        ready: Some((Status::False, ago(1190))),
        ..pod("b", 100)
    };
    cases.push(case(
        "a pod that never became ready is left out",
        2,
        u50,
        vec![pod("a", 100), never_ready],
        vec![("a", 10), ("b", 500)],
        Ok(1),
    ));

    for c in cases {
        let got = replicas_for(
            c.current,
            c.resource,
            c.target,
            &c.pods,
            &metrics(&c.usage),
            &Tuning::default(),
            now(),
        );
        match (got, c.want) {
            (Ok(e), Ok(want)) => assert_eq!(e.replicas, want, "{}", c.name),
            (Err(e), Err(want)) => assert_eq!(e, want, "{}", c.name),
            (got, want) => panic!("{}: got {got:?}, want {want:?}", c.name),
        }
    }
}

#[test]
fn utilization_and_average_are_reported() {
    let e = replicas_for(
        2,
        Resource::Cpu,
        Target::Utilization(50),
        &[pod("a", 100), pod("b", 100)],
        &metrics(&[("a", 250), ("b", 150)]),
        &Tuning::default(),
        now(),
    )
    .unwrap();
    assert_eq!(e.utilization, Some(200));
    assert_eq!(e.average_milli, 200);
}

fn reasons(conditions: &[Condition]) -> Vec<(&'static str, bool, &'static str)> {
    conditions
        .iter()
        .map(|c| (c.type_, c.status, c.reason))
        .collect()
}

const BOUNDS: Bounds = Bounds { min: 1, max: 100 };
const FIVE_MIN: Duration = Duration::from_secs(300);

#[test]
fn without_behavior_scale_up_is_capped_at_double_or_four() {
    let mut h = History::default();
    let (n, c) = normalize(&mut h, None, FIVE_MIN, 1, 10, BOUNDS, now());
    assert_eq!(n, 4);
    assert_eq!(
        reasons(&c),
        [
            ("AbleToScale", true, "ReadyForNewScale"),
            ("ScalingLimited", true, "ScaleUpLimit")
        ]
    );
    let (n, _) = normalize(&mut h, None, FIVE_MIN, 4, 10, BOUNDS, now());
    assert_eq!(n, 8);
    let (n, c) = normalize(
        &mut h,
        None,
        FIVE_MIN,
        8,
        10,
        Bounds { min: 1, max: 9 },
        now(),
    );
    assert_eq!(n, 9);
    assert_eq!(c[1].reason, "TooManyReplicas");
}

#[test]
fn without_behavior_scale_down_waits_for_the_window() {
    let mut h = History::default();
    normalize(&mut h, None, FIVE_MIN, 5, 5, BOUNDS, ago(120));
    let (n, c) = normalize(&mut h, None, FIVE_MIN, 5, 2, BOUNDS, now());
    assert_eq!(n, 5);
    assert_eq!(c[0].reason, "ScaleDownStabilized");
    let later = now() + jiff::SignedDuration::from_secs(200);
    let (n, c) = normalize(&mut h, None, FIVE_MIN, 5, 2, BOUNDS, later);
    assert_eq!(n, 2, "the recommendation of 5 is older than five minutes");
    assert_eq!(c[1].reason, "DesiredWithinRange");
}

fn rules(stabilization: u64, select: Select, policies: &[(PolicyKind, i32, u64)]) -> Rules {
    Rules {
        stabilization: Duration::from_secs(stabilization),
        select,
        policies: policies
            .iter()
            .map(|(kind, value, period)| Policy {
                kind: *kind,
                value: *value,
                period: Duration::from_secs(*period),
            })
            .collect(),
    }
}

#[test]
fn default_behavior_limits_scale_up_per_period() {
    let b = Behavior::default();
    let mut h = History::default();
    // From 2: 100% gives 4, 4 pods give 6; Max picks 6.
    let (n, c) = normalize(&mut h, Some(&b), FIVE_MIN, 2, 20, BOUNDS, now());
    assert_eq!(n, 6);
    assert_eq!(c[1].reason, "ScaleUpLimit");
    record_scale(&mut h, Some(&b), 2, 6, now());
    // Within the same 15 s period the 4 added pods count against the limit.
    let t = now() + jiff::SignedDuration::from_secs(5);
    let (n, c) = normalize(&mut h, Some(&b), FIVE_MIN, 6, 20, BOUNDS, t);
    assert_eq!(n, 6);
    assert_eq!(reasons(&c)[1], ("ScalingLimited", true, "ScaleUpLimit"));
    // A period later: 100% of 6 is 12, 6 + 4 is 10.
    let t = now() + jiff::SignedDuration::from_secs(16);
    let (n, _) = normalize(&mut h, Some(&b), FIVE_MIN, 6, 20, BOUNDS, t);
    assert_eq!(n, 12);
}

#[test]
fn behavior_stabilizes_scale_down_over_its_window() {
    let b = Behavior {
        down: rules(10, Select::Max, &[(PolicyKind::Percent, 100, 15)]),
        ..Behavior::default()
    };
    let mut h = History::default();
    normalize(&mut h, Some(&b), FIVE_MIN, 5, 5, BOUNDS, ago(5));
    let (n, c) = normalize(&mut h, Some(&b), FIVE_MIN, 5, 1, BOUNDS, now());
    assert_eq!(n, 5);
    assert_eq!(
        reasons(&c),
        [
            ("AbleToScale", true, "ScaleDownStabilized"),
            ("ScalingLimited", false, "DesiredWithinRange")
        ]
    );
    let t = now() + jiff::SignedDuration::from_secs(11);
    let (n, _) = normalize(&mut h, Some(&b), FIVE_MIN, 5, 1, BOUNDS, t);
    assert_eq!(n, 1);
}

#[test]
fn up_stabilization_takes_the_lowest_recent_recommendation() {
    let b = Behavior {
        up: rules(60, Select::Max, &[(PolicyKind::Pods, 100, 15)]),
        ..Behavior::default()
    };
    let mut h = History::default();
    normalize(&mut h, Some(&b), FIVE_MIN, 2, 3, BOUNDS, ago(30));
    let (n, c) = normalize(&mut h, Some(&b), FIVE_MIN, 2, 10, BOUNDS, now());
    assert_eq!(n, 3);
    assert_eq!(c[0].reason, "ScaleUpStabilized");
}

#[test]
fn scaling_policies_and_select() {
    struct P {
        name: &'static str,
        behavior: Behavior,
        current: i32,
        desired: i32,
        bounds: Bounds,
        want: (i32, &'static str),
    }
    let zero = |r: Rules| Rules {
        stabilization: Duration::ZERO,
        ..r
    };
    let cases = [
        P {
            name: "one pod per minute down",
            behavior: Behavior {
                down: zero(rules(0, Select::Max, &[(PolicyKind::Pods, 1, 60)])),
                ..Behavior::default()
            },
            current: 5,
            desired: 1,
            bounds: BOUNDS,
            want: (4, "ScaleDownLimit"),
        },
        P {
            name: "scale-down disabled",
            behavior: Behavior {
                down: rules(0, Select::Disabled, &[]),
                ..Behavior::default()
            },
            current: 5,
            desired: 1,
            bounds: BOUNDS,
            want: (5, "ScaleDownLimit"),
        },
        P {
            name: "Min select takes the smaller step up",
            behavior: Behavior {
                up: rules(
                    0,
                    Select::Min,
                    &[(PolicyKind::Percent, 100, 15), (PolicyKind::Pods, 1, 15)],
                ),
                ..Behavior::default()
            },
            current: 2,
            desired: 10,
            bounds: BOUNDS,
            want: (3, "ScaleUpLimit"),
        },
        P {
            name: "max replicas",
            behavior: Behavior::default(),
            current: 4,
            desired: 20,
            bounds: Bounds { min: 1, max: 5 },
            want: (5, "TooManyReplicas"),
        },
        P {
            name: "min replicas",
            behavior: Behavior {
                down: zero(Behavior::default().down),
                ..Behavior::default()
            },
            current: 4,
            desired: 1,
            bounds: Bounds { min: 2, max: 5 },
            want: (2, "TooFewReplicas"),
        },
    ];
    for c in cases {
        let mut h = History::default();
        let (n, conds) = normalize(
            &mut h,
            Some(&c.behavior),
            FIVE_MIN,
            c.current,
            c.desired,
            c.bounds,
            now(),
        );
        assert_eq!((n, conds[1].reason), c.want, "{}", c.name);
    }
}

#[test]
fn a_new_autoscaler_waits_a_window_before_scaling_down() {
    let mut h = History::starting(5, now());
    let later = now() + jiff::SignedDuration::from_secs(15);
    let (n, c) = normalize(&mut h, None, FIVE_MIN, 5, 1, BOUNDS, later);
    assert_eq!(n, 5);
    assert_eq!(c[0].reason, "ScaleDownStabilized");
}
