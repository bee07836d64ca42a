"""ament_python package definition: installs the code, launch, config, rviz and weight files."""

from glob import glob

from setuptools import find_packages, setup

package_name = "mtshare_ros"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "bench"]),
    package_data={package_name: ["weights/*.pt", "config/*"]},
    include_package_data=True,
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.launch.py")),
        ("share/" + package_name + "/config", glob("config/*.yaml") + glob("config/*.xml") + glob("config/*.rviz")),
        ("share/" + package_name + "/config/train", glob("config/train/*.yaml")),
    ],
    install_requires=["setuptools", "numpy", "pyyaml", "tqdm", "torch", "timm", "rosbags"],
    zip_safe=False,
    maintainer="mtshare_ros developers",
    maintainer_email="mtshare@example.org",
    description="Multi-task dense perception (segmentation, depth, normals) with computation sharing for ROS 2.",
    license="Apache-2.0",
    tests_require=["pytest"],
    python_requires=">=3.10",
    entry_points={
        "console_scripts": [
            "mtshare = mtshare_ros.cli:main",
            "mtshare_node = mtshare_ros.ros.node:main",
        ],
    },
)
