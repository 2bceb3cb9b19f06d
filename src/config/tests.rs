use super::*;

#[test]
fn stack_names_follow_the_contract() {
    for ok in ["m2m-api", "a", "x1", &"a".repeat(32)] {
        assert!(validate_stack(ok).is_ok(), "{ok}");
    }
    for bad in ["", "M2M", "a_b", "a.b", &"a".repeat(33), "café"] {
        let err = validate_stack(bad).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("stack name"), "{err}");
    }
}

#[test]
fn domain_prefixes_follow_cognito_rules() {
    assert!(validate_domain_prefix("m2m-api-1a2b3c4d", "p").is_ok());
    let cases = [
        ("", "1 to 63"),
        (&"a".repeat(64) as &str, "1 to 63"),
        ("Upper", "only a-z"),
        ("under_score", "only a-z"),
        ("-lead", "hyphen"),
        ("trail-", "hyphen"),
        ("my-aws-api", "`aws`"),
        ("amazonish", "`amazon`"),
        ("cognitoauth", "`cognito`"),
    ];
    for (prefix, why) in cases {
        let err = validate_domain_prefix(prefix, "domain prefix").unwrap_err();
        assert!(err.to_string().contains(why), "{prefix}: {err}");
    }
}

#[test]
fn derived_prefix_is_stable_valid_and_differs_per_account_region_stack() {
    let a = derived_domain_prefix("123456789012", "eu-west-1", "m2m-api");
    assert_eq!(
        a,
        derived_domain_prefix("123456789012", "eu-west-1", "m2m-api")
    );
    assert!(a.starts_with("m2m-api-") && a.len() == "m2m-api-".len() + 8);
    validate_domain_prefix(&a, "p").unwrap();
    assert_ne!(
        a,
        derived_domain_prefix("123456789013", "eu-west-1", "m2m-api")
    );
    assert_ne!(
        a,
        derived_domain_prefix("123456789012", "eu-west-2", "m2m-api")
    );
    assert_ne!(
        a,
        derived_domain_prefix("123456789012", "eu-west-1", "other")
    );
}

#[test]
fn regions_are_checked_for_shape() {
    for ok in [
        "us-east-1",
        "eu-central-2",
        "us-gov-west-1",
        "ap-southeast-4",
    ] {
        validate_region(ok).unwrap();
    }
    for bad in [
        "",
        "useast1",
        "us-east",
        "US-EAST-1",
        "us-east-1a",
        "moon-1",
        "us-eastttttttttttttttt-1",
    ] {
        assert!(validate_region(bad).is_err(), "{bad}");
    }
}

#[test]
fn regions_outside_the_aws_partition_are_refused_on_aws_only() {
    for other in ["cn-north-1", "us-gov-west-1", "us-isob-east-1"] {
        let err = check_partition(other, false).unwrap_err();
        assert!(err.to_string().contains("partition"), "{err}");
        check_partition(other, true).expect("the emulator takes any region");
    }
    check_partition("eu-west-1", false).unwrap();
}

#[test]
fn scopes_within_cognito_limits() {
    let long = format!("users/{}", "r".repeat(250));
    assert_eq!(long.len(), 256);
    Scope::parse(&long).expect("256 characters in all is allowed");
    let err = Scope::parse(&format!("{long}x")).unwrap_err();
    assert!(err.to_string().contains("at most 256"), "{err}");
    let fifty: Vec<String> = (0..50).map(|i| format!("users/s{i}")).collect();
    assert_eq!(parse_scopes(&fifty).unwrap().len(), 50);
    let mut many = fifty.clone();
    many.push("users/s50".into());
    let err = parse_scopes(&many).unwrap_err();
    assert!(err.to_string().contains("at most 50"), "{err}");
}

#[test]
fn scopes_parse_sort_dedup_and_share_one_server() {
    let s = parse_scopes(&[
        "users/write".into(),
        "users/read".into(),
        "users/read".into(),
    ])
    .unwrap();
    assert_eq!(
        s.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        ["users/read", "users/write"]
    );
    for bad in ["users", "/read", "users/", "us ers/read", "users/re ad"] {
        assert!(parse_scopes(&[bad.to_string()]).is_err(), "{bad}");
    }
    let err = parse_scopes(&["users/read".into(), "orders/read".into()]).unwrap_err();
    assert!(err.to_string().contains("one resource server"), "{err}");
}

#[test]
fn file_config_rejects_unknown_keys_and_flags_win() {
    let err = toml::from_str::<FileConfig>("stak = \"x\"").unwrap_err();
    assert!(err.to_string().contains("stak"));
    let file: FileConfig = toml::from_str(
        "scopes = [\"users/read\", \"users/write\"]\n[handler]\nmemory_mb = 256\ntimeout_s = 20\n",
    )
    .unwrap();
    let args = StackArgs {
        memory: Some(512),
        ..Default::default()
    };
    let d = resolve_desired(&args, &file).unwrap();
    assert_eq!(d.memory_mb, 512, "flag beats file");
    assert_eq!(d.timeout_s, 20, "file beats default");
    assert_eq!(d.scopes.len(), 2);
    assert_eq!(d.token_validity_min, DEFAULT_TOKEN_VALIDITY_MIN);
    let err = resolve_desired(
        &StackArgs {
            memory: Some(64),
            ..Default::default()
        },
        &file,
    )
    .unwrap_err();
    assert!(err.to_string().contains("memory"), "{err}");
}
