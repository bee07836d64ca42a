"""Launch the mtshare perception node (lifecycle; autostarts to active unless autostart:=false).

    ros2 launch mtshare_ros mtshare.launch.py image_topic:=/camera/color/image_raw \
        camera_info_topic:=/camera/color/camera_info
"""

from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import EnvironmentVariable, LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode, Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("mtshare_ros")
    args = [
        DeclareLaunchArgument("image_topic", default_value="/camera/image_raw", description="Input image topic."),
        DeclareLaunchArgument(
            "camera_info_topic", default_value="/camera/camera_info", description="Input camera info topic."
        ),
        DeclareLaunchArgument("namespace", default_value="mtshare", description="Namespace of the node's outputs."),
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution([share, "config", "mtshare.yaml"]),
            description="Node parameters (YAML).",
        ),
        DeclareLaunchArgument("device", default_value="auto", description="auto, cpu, cuda or cuda:N."),
        DeclareLaunchArgument(
            "cameras", default_value="['']",
            description="Camera names, e.g. [front, rear]: each name N subscribes <namespace>/N/image and "
            "N/camera_info and publishes N/segmentation, N/depth, ...; [''] is one camera on image_topic.",
        ),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="Use /clock (bag replay)."),
        DeclareLaunchArgument("autostart", default_value="true", description="Configure and activate on start."),
        DeclareLaunchArgument("rviz", default_value="false", description="Also start RViz with the shipped config."),
        DeclareLaunchArgument(
            "fastdds_profile",
            default_value=PathJoinSubstitution([share, "config", "fastdds_shm.xml"]),
            description="Fast DDS profile (large shared-memory segment for images).",
        ),
    ]
    node = LifecycleNode(
        package="mtshare_ros",
        executable="mtshare_node",
        name="mtshare",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        parameters=[
            LaunchConfiguration("params_file"),
            {
                "device": LaunchConfiguration("device"),
                "cameras": ParameterValue(LaunchConfiguration("cameras"), value_type=list[str]),
                "use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool),
                "autostart": ParameterValue(LaunchConfiguration("autostart"), value_type=bool),
            },
        ],
        remappings=[
            ("image", LaunchConfiguration("image_topic")),
            ("image/compressed", [LaunchConfiguration("image_topic"), "/compressed"]),
            ("camera_info", LaunchConfiguration("camera_info_topic")),
        ],
    )
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        arguments=["-d", PathJoinSubstitution([share, "config", "mtshare.rviz"])],
        condition=IfCondition(LaunchConfiguration("rviz")),
    )
    profile = SetEnvironmentVariable(
        "FASTDDS_DEFAULT_PROFILES_FILE",
        EnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", default_value=LaunchConfiguration("fastdds_profile")),
    )
    return LaunchDescription(args + [profile, node, rviz])
