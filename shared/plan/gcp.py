"""What a twin's layers are made of on GCP: Cloud Functions (2nd gen) calling each other by URL,
a Pub/Sub telemetry topic, Firestore, Cloud Storage, Cloud Scheduler jobs and Workflows, all run
by one service account. GCP hosts neither L4 nor L5. Each device publishes with the key of its own
service account, which may publish to the telemetry topic and nothing else."""

from __future__ import annotations

from shared.contracts import (
    FUNCTIONS,
    Function,
    Output,
    Setting,
    device_credentials_output,
    keyed_output,
    keyed_setting,
)
from shared.plan.cloud import CloudPlanner, MoverSchedule, StorePairs
from shared.plan.drafts import Hosted
from shared.resources import UserCodeRef
from shared.resources.gcp import (
    CloudFunctionConfig,
    FirestoreConfig,
    GcpIotDeviceConfig,
    GcsBucketConfig,
    PubSubTopicConfig,
    SchedulerJobConfig,
    ServiceAccountConfig,
    WorkflowConfig,
)

FUNCTION_RUNTIME = "python311"
SERVICE_ACCOUNT = "gcp/setup/service-account"
FUNCTIONS_BUCKET = "gcp/setup/functions-bucket"
WORKFLOW_DEFINITION = "state_machines/google_cloud_workflow.json"


class GcpPlanner(CloudPlanner):
    provider = "gcp"
    calls_by_url = True
    checker_sends_feedback = True

    @property
    def project(self) -> str | None:
        return self.d.spec.clouds.gcp.project_id

    @property
    def region(self) -> str:
        return self.d.spec.clouds.gcp.region

    # -- hosting ---------------------------------------------------------------------------

    def function(self, hosted: Hosted) -> str:
        d = self.d
        short = hosted.short or str(hosted.function)
        config = CloudFunctionConfig(
            name=hosted.cloud_name or d.gcp.function(short),
            project_id=self.project,
            region=self.region,
            package=hosted.function,
            runtime=FUNCTION_RUNTIME,
            trigger=FUNCTIONS[hosted.function].trigger,
            environment=d.environment(hosted),
            public=hosted.public_url is not None,
            service_account=d.gcp.service_account(),
            topic=hosted.topic,
            processors=hosted.processors,
            twin_update=hosted.twin_update,
            user_function=hosted.user_function,
            path_to_code=hosted.path_to_code,
            user_code=hosted.user_code,
        )
        outputs = [str(p) for p in (hosted.public_url, *hosted.produces) if p is not None]
        return d.add("gcp", hosted.layer, short, "cloud-function", config,
                     [SERVICE_ACCOUNT, FUNCTIONS_BUCKET, *hosted.needs], outputs).id

    def processor_access(self) -> StorePairs:
        """Each device's own processor function, by its URL (keyed by device id)."""
        return [(keyed_output(Output.PROCESSOR_URL, device.id), keyed_setting(Setting.PROCESSOR_URL, device.id))
                for device in self.d.spec.devices]

    def store_settings(self, tier: str) -> StorePairs:
        return {
            "hot": [
                (Output.FIRESTORE_DATABASE, Setting.FIRESTORE_DATABASE),
                (Output.FIRESTORE_COLLECTION, Setting.FIRESTORE_COLLECTION),
            ],
            "cold": [(Output.COLD_GCS_BUCKET, Setting.COLD_GCS_BUCKET)],
            "archive": [(Output.ARCHIVE_GCS_BUCKET, Setting.ARCHIVE_GCS_BUCKET)],
        }[tier]

    # -- layers ----------------------------------------------------------------------------

    def setup(self) -> None:
        """The service account the functions run as, and the bucket their sources go to."""
        d = self.d
        d.add("gcp", "setup", "service-account", "service-account", ServiceAccountConfig(
            name=d.gcp.service_account(), project_id=self.project))
        d.add("gcp", "setup", "functions-bucket", "gcs-bucket", GcsBucketConfig(
            name=d.gcp.functions_bucket(), project_id=self.project, location=self.region, storage_class="STANDARD"),
            needs=[SERVICE_ACCOUNT])

    def layer_1(self, target: Function) -> None:
        """A Pub/Sub topic devices publish to (each device gets credentials for it), and the
        dispatcher it triggers."""
        d = self.d
        topic = d.gcp.telemetry_topic()
        topic_id = d.add("gcp", "L1", "telemetry-topic", "pubsub-topic", PubSubTopicConfig(
            name=topic, project_id=self.project), needs=[SERVICE_ACCOUNT]).id
        dispatcher = self.function(Hosted("L1", Function.DISPATCHER, environment={Setting.TARGET_FUNCTION: str(target)},
                                          needs=(topic_id,), topic=topic))
        if target == Function.PROCESSOR:
            for output, setting in self.processor_access():
                d.wire(output, dispatcher, setting)
        else:
            d.wire(Output.CONNECTOR_URL, dispatcher, Setting.CONNECTOR_URL)
        needs = [topic_id]
        feedback_topic = None
        if d.feedback is not None:
            # Feedback back to devices (Cloud IoT Core's config/commands are gone): a topic the twin's
            # functions publish to with the device id attribute; each device pulls its own
            # subscription, filtered on that attribute (see `feedback_channel`).
            feedback_topic = d.gcp.feedback_topic()
            needs.append(d.add("gcp", "L1", "feedback-topic", "pubsub-topic", PubSubTopicConfig(
                name=feedback_topic, project_id=self.project, publishers=(d.gcp.service_account(),)),
                needs=[SERVICE_ACCOUNT], produces=[Output.FEEDBACK_TOPIC]).id)
        for device in d.spec.devices:
            d.add("gcp", "L1", f"device-{device.id}", "iot-device", GcpIotDeviceConfig(
                name=f"{topic}/{device.id}", project_id=self.project, device_id=device.id, topic=topic,
                service_account=d.gcp.device_account(device.id), feedback_topic=feedback_topic,
                feedback_subscription=d.gcp.feedback_subscription(device.id) if feedback_topic else None),
                needs=needs, produces=[device_credentials_output(device.id)])

    def processors(self) -> None:
        """One processor function per device (`GcpNaming.device_processor`), as AWS has a Lambda
        per device: its package carries that device's own `process` when the bundle has one, so a
        change to one device's code redeploys that function alone. Callers reach it by its URL."""
        d = self.d
        for device in d.spec.devices:
            code = d.processor_code(device.id)
            proc = self.function(Hosted("L2", Function.PROCESSOR, short=f"processor-{device.id}",
                                        cloud_name=d.gcp.device_processor(device.id),
                                        produces=(keyed_output(Output.PROCESSOR_URL, device.id),),
                                        processors=(device.id,), user_code=(code,) if code else ()))
            d.wire(Output.PERSISTER_URL, proc, Setting.PERSISTER_URL)

    def feedback_channel(self) -> tuple[Output, Setting]:
        """Feedback is published to the feedback topic with the device id attribute; the device
        reads it from its own subscription (least privilege, like its publish grant)."""
        return Output.FEEDBACK_TOPIC, Setting.FEEDBACK_TOPIC

    def workflow(self) -> tuple[Output, Setting]:
        d = self.d
        d.add("gcp", "L2", "event-workflow", "workflow", WorkflowConfig(
            name=d.gcp.workflow(), project_id=self.project, region=self.region, definition=WORKFLOW_DEFINITION),
            needs=[SERVICE_ACCOUNT], produces=[Output.WORKFLOW_NAME])
        return Output.WORKFLOW_NAME, Setting.WORKFLOW_NAME

    def event_action(self, user_function: str, path_to_code: str | None, spec_path: str,
                     code: UserCodeRef | None) -> None:
        """A function per action (`GcpNaming.event_action`), private: the event checker calls it
        by its URL with an ID token when the action's rule fires."""
        d = self.d
        self.function(Hosted("L2", Function.EVENT_ACTION, short=f"event-action-{user_function}",
                                      cloud_name=d.gcp.event_action(user_function),
                                      produces=(keyed_output(Output.EVENT_ACTION_URL, user_function),),
                                      user_function=user_function, path_to_code=path_to_code,
                                      user_code=(code,) if code else ()))
        checker = f"gcp/L2/{Function.EVENT_CHECKER}"
        if checker in d.drafts:
            d.wire(keyed_output(Output.EVENT_ACTION_URL, user_function), checker,
                   keyed_setting(Setting.EVENT_ACTION_URL, user_function))

    def hot_store(self) -> None:
        d = self.d
        d.add("gcp", "L3_hot", "firestore", "firestore", FirestoreConfig(
            name=d.gcp.firestore_database(), project_id=self.project, location=self.region,
            collection=d.gcp.hot_collection(), service_account=d.gcp.service_account()),
            needs=[SERVICE_ACCOUNT], produces=[Output.FIRESTORE_DATABASE, Output.FIRESTORE_COLLECTION])

    def cold_store(self) -> None:
        d = self.d
        d.add("gcp", "L3_cold", "cold-bucket", "gcs-bucket", GcsBucketConfig(
            name=d.gcp.cold_bucket(), project_id=self.project, location=self.region, storage_class="NEARLINE",
            object_users=(d.gcp.service_account(),)),
            needs=[SERVICE_ACCOUNT], produces=[Output.COLD_GCS_BUCKET])

    def archive_store(self) -> None:
        d = self.d
        d.add("gcp", "L3_archive", "archive-bucket", "gcs-bucket", GcsBucketConfig(
            name=d.gcp.archive_bucket(), project_id=self.project, location=self.region, storage_class="ARCHIVE",
            object_users=(d.gcp.service_account(),)),
            needs=[SERVICE_ACCOUNT], produces=[Output.ARCHIVE_GCS_BUCKET])

    def mover(self, layer: str, function: Function, schedule: MoverSchedule) -> str:
        """The mover function and the Cloud Scheduler job that calls it."""
        d = self.d
        mover = self.function(Hosted(layer, function))
        d.add("gcp", layer, f"{function}-schedule", "scheduler-job", SchedulerJobConfig(
            name=d.gcp.schedule(str(function)), project_id=self.project, region=self.region,
            cron=schedule.gcp_cron, function=d.gcp.function(str(function)), service_account=d.gcp.service_account()),
            needs=[mover])
        return mover
