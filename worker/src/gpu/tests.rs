use std::path::{Path, PathBuf};

use super::*;

fn node(name: &str, major: u32, minor: u32) -> Node {
    Node {
        path: Path::new("/dev").join(name),
        major,
        minor,
    }
}

/// A host with two GPUs, as `/dev` and `ldconfig -p` show one with the driver loaded.
fn two_gpus() -> GpuHost {
    let nodes = [
        node("nvidia0", 195, 0),
        node("nvidia1", 195, 1),
        node("nvidiactl", 195, 255),
        node("nvidia-modeset", 195, 254),
        node("nvidia-uvm", 508, 0),
        node("nvidia-uvm-tools", 508, 1),
    ];
    let ldconfig = "\
1045 libs found in cache `/etc/ld.so.cache'
\tlibnvidia-ml.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libnvidia-ml.so.1
\tlibnvidia-ml.so.1 (libc6) => /lib/i386-linux-gnu/libnvidia-ml.so.1
\tlibnvidia-ml.so (libc6,x86-64) => /lib/x86_64-linux-gnu/libnvidia-ml.so
\tlibcuda.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libcuda.so.1
\tlibcuda.so.1 (libc6,x86-64) => /usr/local/lib/libcuda.so.1
\tlibcudart.so.12 (libc6,x86-64) => /usr/local/cuda/lib64/libcudart.so.12
\tlibnvidia-ptxjitcompiler.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libnvidia-ptxjitcompiler.so.1
\tlibc.so.6 (libc6,x86-64, OS ABI: Linux 3.2.0) => /lib/x86_64-linux-gnu/libc.so.6
";
    let bins = vec![(
        "nvidia-smi".to_owned(),
        PathBuf::from("/usr/bin/nvidia-smi"),
    )];
    GpuHost::from_parts(&nodes, ldconfig, bins).unwrap()
}

#[test]
fn the_host_is_read_like_the_container_toolkit_reads_it() {
    let host = two_gpus();
    let gpus: Vec<u32> = host.gpus.iter().map(|(i, _)| *i).collect();
    assert_eq!(gpus, [0, 1]);
    let shared: Vec<&Path> = host.shared.iter().map(|n| n.path.as_path()).collect();
    assert_eq!(
        shared,
        [
            Path::new("/dev/nvidiactl"),
            Path::new("/dev/nvidia-uvm"),
            Path::new("/dev/nvidia-uvm-tools"),
            Path::new("/dev/nvidia-modeset")
        ]
    );
    if cfg!(target_arch = "x86_64") {
        let libs: Vec<&str> = host.libraries.iter().map(|(n, _)| n.as_str()).collect();
        // Driver libraries only (not the CUDA runtime, not libc), 64-bit, each name once.
        assert_eq!(
            libs,
            [
                "libnvidia-ml.so.1",
                "libnvidia-ml.so",
                "libcuda.so.1",
                "libnvidia-ptxjitcompiler.so.1"
            ]
        );
        assert_eq!(
            host.libraries[2].1,
            Path::new("/lib/x86_64-linux-gnu/libcuda.so.1")
        );
    }
}

#[test]
fn no_control_node_means_no_gpu() {
    assert_eq!(
        GpuHost::from_parts(&[node("nvidia0", 195, 0)], "", Vec::new()),
        None
    );
    assert_eq!(GpuHost::from_parts(&[], "", Vec::new()), None);
}

#[test]
fn a_sandbox_gets_its_gpus_the_shared_nodes_and_the_rules_for_them() {
    let host = two_gpus();
    let one = host.select(&GpuRequest::Indices(vec![1])).unwrap();
    assert_eq!(one.indices, [1]);
    assert!(one.nodes.contains(&PathBuf::from("/dev/nvidia1")));
    assert!(
        !one.nodes.contains(&PathBuf::from("/dev/nvidia0")),
        "not the other GPU"
    );
    assert!(one.nodes.contains(&PathBuf::from("/dev/nvidiactl")));
    let lines: Vec<String> = one.rules.iter().map(|r| r.v1_line()).collect();
    assert!(lines.contains(&"c 195:1 rw".to_owned()), "{lines:?}");
    assert!(lines.contains(&"c 195:255 rw".to_owned()), "{lines:?}");
    assert!(lines.contains(&"c 508:0 rw".to_owned()), "{lines:?}");
    assert!(!lines.contains(&"c 195:0 rw".to_owned()), "{lines:?}");
    assert!(
        lines.contains(&"c 1:3 rw".to_owned()),
        "the defaults stay: {lines:?}"
    );
    assert!(one.files.contains(&(
        PathBuf::from("/usr/bin/nvidia-smi"),
        PathBuf::from("bin/nvidia-smi")
    )));
    if cfg!(target_arch = "x86_64") {
        assert!(one.files.contains(&(
            PathBuf::from("/lib/x86_64-linux-gnu/libcuda.so.1"),
            PathBuf::from("lib64/libcuda.so.1")
        )));
    }
    let both = host.select(&GpuRequest::Count(2)).unwrap();
    assert_eq!(both.indices, [0, 1]);
    let first = host.select(&GpuRequest::default()).unwrap();
    assert_eq!(first.indices, [0]);
}

#[test]
fn asking_for_what_is_not_there_is_refused_with_what_is() {
    let host = two_gpus();
    assert_eq!(
        host.select(&GpuRequest::Indices(vec![0, 3]))
            .unwrap_err()
            .to_string(),
        "GPU 3 is not on this machine (it has GPU 0, 1)"
    );
    assert_eq!(
        host.select(&GpuRequest::Count(4)).unwrap_err().to_string(),
        "4 GPUs asked for, this machine has 2"
    );
}
